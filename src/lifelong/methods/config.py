"""Typed method configs: dataclasses with defaults and one help string per field.

Every method declares a config dataclass whose fields are made with :func:`hp`.
:func:`build_config` turns a dict of overrides (values may be strings, as they come
from the command line) into a validated instance and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from lifelong.errors import ConfigError


def hp(default: Any, help: str):
    """A config field with a default and a help string (shown by ``lifelong show``)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class MethodConfig:
    """Base of every method config. Subclasses add fields with :func:`hp`."""

    def to_dict(self) -> dict:
        """JSON-able dict of every field (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def config_fields(cls: type[MethodConfig]) -> list[dict]:
    """Name, type, default and help of each field of ``cls``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append({"name": f.name, "type": _type_name(hints[f.name]), "default": default,
                    "help": f.metadata.get("help", "")})
    return out


def build_config(cls: type[MethodConfig], overrides: dict | MethodConfig | None = None) -> MethodConfig:
    """Instantiate ``cls`` with ``overrides`` parsed to each field's type.

    Raises :class:`ConfigError` naming the key for unknown keys and unparsable values.
    """
    if isinstance(overrides, cls):
        return overrides
    if isinstance(overrides, MethodConfig):
        raise ConfigError(f"expected a {cls.__name__}, got a {type(overrides).__name__}")
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no key(s) {unknown}; valid keys: {', '.join(names)}")
    values = {k: _parse(k, v, hints[k]) for k, v in overrides.items()}
    cfg = cls(**values)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _parse(key: str, value: Any, tp) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    try:
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            if value is None or (isinstance(value, str) and value.lower() == "none"):
                if type(None) in args:
                    return None
            inner = [a for a in args if a is not type(None)]
            return _parse(key, value, inner[0])
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            return tuple(_parse(key, v, args[0]) for v in value)
        if tp is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}") from None
    return value
