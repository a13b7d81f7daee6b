"""Typed values from the command line or Python: one parser for configs, scenario and data arguments.

:func:`parse_value` turns a value (often a string from ``--set``) into a field's
annotated type and raises :class:`~lifelong.errors.ConfigError` naming the key when it
cannot. :func:`checked_kwargs` does the same for a function's keyword arguments
(unknown and missing ones included), so every ``--set`` target fails with one message.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from lifelong.errors import ConfigError

_NONE_WORDS = ("none", "null")


def type_name(tp: Any) -> str:
    """A short readable name of a type annotation (``int``, ``str | None``)."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType)


def parse_value(key: str, value: Any, tp: Any, *, where: str = "config key") -> Any:
    """``value`` converted to annotation ``tp``; a :class:`ConfigError` naming ``key`` otherwise.

    Strings are parsed (``"0.1"`` -> 0.1, ``"yes"`` -> True, ``"(1,2)"`` -> (1, 2)).
    Booleans are not integers here (``buffer_size=True`` is refused), floats must be
    finite (``lr=inf`` is refused), and unions try their members in order.
    Annotations this parser does not know (``Sequence[...]``, classes) pass through.
    """
    try:
        return _parse(value, tp)
    except (TypeError, ValueError, OverflowError):
        shown = value if not isinstance(value, str) else repr(value)
        raise ConfigError(f"{where} {key!r} expects {_expected(tp)}, got {shown}") from None


def _expected(tp: Any) -> str:
    if _is_union(tp):
        return " or ".join("none" if a is type(None) else _expected(a) for a in typing.get_args(tp))
    if tp is float:
        return "a finite number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if typing.get_origin(tp) is tuple:
        return f"a comma-separated list of {_expected(typing.get_args(tp)[0])}s (like 256,256)".replace("an ", "")
    return type_name(tp)


def _parse(value: Any, tp: Any) -> Any:
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
            return None
        inner = [a for a in args if a is not type(None)]
        for a in inner:  # a value that already has a member's type keeps it
            if a in (bool, int, float, str) and type(value) is a:
                return value
            if a is float and type(value) is int:
                return _parse(value, float)
        errors = []
        for a in inner:
            try:
                return _parse(value, a)
            except (TypeError, ValueError, OverflowError) as e:
                errors.append(e)
        raise ValueError(value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(value)
        return tuple(_parse(v, args[0]) for v in value)
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(value)
    if tp is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        if isinstance(value, int):
            return int(value)
        raise TypeError(value)
    if tp is float:
        if isinstance(value, bool):
            raise TypeError(value)
        out = float(value.strip() if isinstance(value, str) else value)
        if not math.isfinite(out):
            raise ValueError(value)
        return out
    if tp is str:
        if isinstance(value, (dict, list, tuple)):
            raise TypeError(value)
        return str(value)
    return value


def checked_kwargs(fn: Callable, kwargs: dict, *, kind: str, name: str, skip: int = 0) -> dict:
    """``kwargs`` for ``fn`` with unknown keys refused, required ones demanded and values typed.

    ``kind``/``name`` name the target in messages (``scenario 'online'``, ``dataset
    'mnist'``) and the ``--set`` prefix to use; ``skip`` leading positional parameters
    (the dataset of a scenario function) are not taken from ``kwargs``.
    """
    sig = inspect.signature(fn)
    params = [
        p
        for p in list(sig.parameters.values())[skip:]
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    valid = [p.name for p in params]
    prefix = "scenario" if kind == "scenario" else "data"
    unknown = sorted(set(kwargs) - set(valid))
    if unknown and not takes_any:
        raise ConfigError(
            f"{kind} {name!r} takes no {'argument' if len(unknown) == 1 else 'arguments'} "
            f"{', '.join(unknown)}; valid keys: {', '.join(valid) or '(none)'} "
            f"(--set {prefix}.KEY=VALUE)"
        )
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in kwargs]
    if missing:
        raise ConfigError(
            f"{kind} {name!r} needs {', '.join(missing)}; give " + " ".join(f"--set {prefix}.{m}=..." for m in missing)
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: pass the values through
        hints = {}
    return {k: (parse_value(k, v, hints[k], where=f"{prefix} key") if k in hints else v) for k, v in kwargs.items()}
