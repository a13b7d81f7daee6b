"""Reproduction protocols as data: one TOML file per paper, ``lifelong/papers/specs/<short-name>.toml``.

A spec has a ``[quick]`` and a ``[full]`` table and optionally ``[common]``, merged under
both (a scale's value wins; tables merge key by key). :func:`load_spec` returns one
scale's settings as a plain dict, with ``"a.b.c=value"`` overrides applied: an unknown key
or a value of another type than the spec's is refused with one :class:`ConfigError`.
Files are read with :mod:`importlib.resources`, so an installed wheel works.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import sys
from collections.abc import Iterable
from typing import Any

from lifelong.errors import ConfigError
from lifelong.values import parse_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SCALES: tuple[str, ...] = ("quick", "full")
TABLES: tuple[str, ...] = ("common", *SCALES)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _spec_file(name: str):
    return importlib.resources.files("lifelong.papers").joinpath("specs", f"{name}.toml")


def spec_names() -> list[str]:
    """Short names of the papers that have a spec file."""
    folder = importlib.resources.files("lifelong.papers").joinpath("specs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_spec(name: str) -> dict:
    """The raw tables of paper ``name``'s spec file (``common``, ``quick``, ``full``).

    Raises:
        ConfigError: no spec file, invalid TOML, a missing scale table or an unknown table.
    """
    path = _spec_file(name)
    if not path.is_file():
        raise ConfigError(
            f"paper {name} has no spec file specs/{name}.toml; papers with one: {', '.join(spec_names())}"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"specs/{name}.toml is not valid TOML: {e}") from None
    unknown = sorted(set(raw) - set(TABLES))
    missing = [s for s in SCALES if not isinstance(raw.get(s), dict)]
    if unknown or missing:
        raise ConfigError(
            f"specs/{name}.toml must hold the tables [quick] and [full] (and optionally [common]); "
            f"missing: {', '.join(missing) or '-'}; unknown: {', '.join(unknown) or '-'}"
        )
    return raw


def _merge(base: dict, over: dict) -> dict:
    """``over`` merged onto a copy of ``base``: nested tables key by key, other values replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def flatten(settings: dict, prefix: str = "") -> dict[str, Any]:
    """Leaf values of ``settings`` by dotted key (``{"arms": {"lora": {"r": 8}}}`` -> ``{"arms.lora.r": 8}``)."""
    out: dict[str, Any] = {}
    for k, v in settings.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_spec(name: str, scale: str, sets: Iterable[str] = ()) -> dict:
    """The settings of paper ``name`` at ``scale``: ``[common]`` merged with ``[scale]``, then ``sets`` applied.

    Each entry of ``sets`` is ``"dotted.key=value"``; the value is parsed to the type of
    the spec's value (:func:`lifelong.values.parse_value`; lists as ``1,2,3`` or TOML).

    Raises:
        ConfigError: unknown scale, missing/invalid spec file, unknown key, value of the wrong type.
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    raw = read_spec(name)
    settings = _merge(raw.get("common", {}), raw[scale])
    return apply_sets(settings, sets, where=f"paper {name} ({scale} scale)")


def apply_sets(settings: dict, sets: Iterable[str], where: str = "spec") -> dict:
    """A copy of ``settings`` with each ``"dotted.key=value"`` of ``sets`` applied (see :func:`load_spec`)."""
    out = copy.deepcopy(settings)
    valid = list(flatten(settings))
    for item in sets:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}; valid keys of {where}: {', '.join(valid)}")
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"unknown setting {key!r} of {where}; valid keys: {', '.join(valid)}")
        current = node[parts[-1]]
        if isinstance(current, dict) and current:
            raise ConfigError(
                f"setting {key!r} of {where} is a table; set one of its keys: "
                f"{', '.join(k for k in valid if k.startswith(key + '.'))}"
            )
        node[parts[-1]] = _parse_like(key, text.strip(), current, where)
    return out


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _parse_like(key: str, text: str, current: Any, where: str) -> Any:
    """``text`` parsed to the type of ``current`` (a TOML value); ConfigError naming ``key`` otherwise."""
    label = f"{where} setting"
    if isinstance(current, (bool, int, float)):
        return parse_value(key, text, type(current), where=label)
    if isinstance(current, str):
        return _unquote(text)
    if isinstance(current, list):
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        scalar = {type(v) for v in current}
        if current and len(scalar) == 1 and scalar <= {bool, int, float, str}:
            (tp,) = scalar
            items = [_unquote(v.strip()) for v in inner.split(",") if v.strip()]
            return [v if tp is str else parse_value(key, v, tp, where=label) for v in items]
        try:
            value = tomllib.loads(f"v = [{inner}]")["v"]
        except tomllib.TOMLDecodeError:
            if current:
                raise ConfigError(f"{label} {key!r} expects a list like {json.dumps(current)}, got {text!r}") from None
            value = [_scalar(v.strip()) for v in inner.split(",") if v.strip()]  # bare words: strings
        if current and not all(_same_shape(v, current[0]) for v in value):
            raise ConfigError(f"{label} {key!r} expects a list like {json.dumps(current)}, got {text!r}")
        return value
    raise ConfigError(f"{label} {key!r} cannot be set from the command line")


def _scalar(text: str) -> Any:
    """A TOML scalar (number, boolean, quoted string) parsed, else ``text`` itself as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _same_shape(value: Any, like: Any) -> bool:
    """Whether ``value`` has ``like``'s type (lists element-wise; an int may stand for a float)."""
    if isinstance(like, list):
        return (
            isinstance(value, list) and all(_same_shape(v, w) for v, w in zip(value, like)) and len(value) == len(like)
        )
    if isinstance(like, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return type(value) is type(like)


class ScaleSettings(dict):
    """Settings of one paper by scale name, loaded from its spec on first use.

    For callers that look settings up by name (``SCALES["full"]``) and add their own
    named variants (``SCALES["bench"] = dict(SCALES["full"], seeds=(0,))``).
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __missing__(self, scale: str) -> dict:
        self[scale] = load_spec(self.name, scale)
        return self[scale]


def _toml_key(key: str) -> str:
    return ".".join(p if _BARE_KEY.match(p) else json.dumps(p) for p in key.split("."))


def format_spec(settings: dict) -> str:
    """The settings as TOML lines ``dotted.key = value``, one leaf per line."""
    return "\n".join(f"{_toml_key(k)} = {json.dumps(v)}" for k, v in flatten(settings).items())


__all__ = ["SCALES", "ScaleSettings", "spec_names", "read_spec", "load_spec", "apply_sets", "flatten", "format_spec"]
