"""Typed method configs: dataclasses with defaults and one help string per field.

Every method declares a config dataclass whose fields are made with :func:`hp`.
:func:`build_config` turns a dict of overrides (values may be strings, as they come
from the command line) into a validated instance and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from lifelong.errors import ConfigError
from lifelong.values import parse_value, type_name


def hp(default: Any, help: str) -> Any:
    """A config field with a default and a help string (shown by ``lifelong show``)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class MethodConfig:
    """Base of every method config. Subclasses add fields with :func:`hp`.

    ``data_defaults`` maps a data kind (:data:`lifelong.data.kinds.DATA_KINDS`: pixels, embeddings,
    tokens, vectors) to the defaults that replace the field defaults on that kind of data; explicit
    overrides still win. :func:`build_config` with ``data_kind`` resolves them.
    """

    data_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    data_kind: ClassVar[str | None] = None  # set per instance by build_config

    def to_dict(self) -> dict:
        """JSON-able dict of every field (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def config_fields(cls: type[MethodConfig], data_kind: str | None = None) -> list[dict]:
    """Name, type, default and help of each field of ``cls``.

    With ``data_kind`` the default is the one resolved for that kind of data, and ``"from_data"`` says
    whether the data kind changed it.
    """
    hints = typing.get_type_hints(cls)
    by_data = defaults_for_data(cls, data_kind)
    out = []
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": by_data.get(f.name, default),
                "help": f.metadata.get("help", ""),
                "from_data": f.name in by_data,
            }
        )
    return out


def defaults_for_data(cls: type[MethodConfig], data_kind: str | None) -> dict[str, Any]:
    """The defaults ``cls`` uses on data of kind ``data_kind`` in place of its field defaults (``{}`` for None)."""
    if data_kind is None:
        return {}
    from lifelong.data.kinds import check_kind

    check_kind(data_kind)
    table = cls.data_defaults.get(data_kind, {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}.data_defaults[{data_kind!r}] names unknown key(s) {unknown}")
    return dict(table)


def build_config(
    cls: type[MethodConfig], overrides: dict | MethodConfig | None = None, data_kind: str | None = None
) -> MethodConfig:
    """Instantiate ``cls`` with ``overrides`` parsed to each field's type.

    With ``data_kind`` (``pixels``, ``embeddings``, ``tokens``, ``vectors``) the class's
    ``data_defaults`` for that kind replace the field defaults first; ``overrides`` win over both.
    Raises :class:`ConfigError` naming the key for unknown keys and unparsable values
    (booleans are not integers, floats must be finite, temperatures must be > 0).
    """
    if isinstance(overrides, cls):
        return overrides
    if isinstance(overrides, MethodConfig):
        raise ConfigError(f"expected a {cls.__name__}, got a {type(overrides).__name__}")
    overrides = {**defaults_for_data(cls, data_kind), **dict(overrides or {})}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no key(s) {unknown}; valid keys: {', '.join(names)}")
    values = {k: parse_value(k, v, hints[k]) for k, v in overrides.items()}
    cfg = cls(**values)
    cfg.data_kind = data_kind  # not a field: which defaults it was resolved against (for error messages)
    _check_field_ranges(cfg)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def _type_name(tp: Any) -> str:
    return type_name(tp)


def _check_field_ranges(cfg: MethodConfig) -> None:
    """Rules every config obeys: a temperature divides scores, so it must be > 0; an optimizer is registered."""
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name == "optimizer" and isinstance(v, str):
            from lifelong.errors import unknown_name
            from lifelong.optim import list_optimizers
            from lifelong.optim.spec import parse_optimizer_spec

            spec = parse_optimizer_spec(v)  # "sgd+norm_test:eta=0.5": the optimizer and a component
            if spec.name not in list_optimizers():
                raise unknown_name("optimizer", spec.name, list_optimizers())
            if spec.batch_test is not None and not getattr(cfg, "adaptive_batch", False):
                raise ConfigError(
                    f"{type(cfg).__name__} does not train in one mini-batch loop, so the optimizer "
                    f"component {spec.batch_test} does not apply; use optimizer={spec.name}"
                )
        if "temperature" in f.name and isinstance(v, float) and not v > 0:
            raise ConfigError(f"{f.name} must be > 0 (it divides the scores), got {v}")
