"""LoRA settings: :class:`LoRAConfig`, the adapter-kind registry and the initialiser registry.

:class:`LoRAConfig` holds rank, alpha, dropout, target-module patterns (HF PEFT semantics)
and the name of an initialiser in :data:`LORA_INITS`. Variants subclass it, name their
``kind`` and register with :func:`register_adapter_kind`, so a saved adapter is rebuilt as
the right class (:meth:`LoRAConfig.from_dict`). Initialisers are registered by name with
:func:`register_lora_init`; the built-in ones live next to the layer in ``layer.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from lifelong.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from lifelong.adapters.lora.layer import LoRALinear

ALL_LINEAR = "all-linear"


@dataclass
class LoRAConfig:
    """Settings of one LoRA adapter (defaults: HF PEFT's ``LoraConfig``).

    Attributes:
        r: rank of the update ``B A``.
        alpha: scaling numerator; the update is multiplied by ``alpha / r``
            (``alpha / sqrt(r)`` with ``use_rslora``).
        dropout: dropout on the adapter's input (LoRA paper; 0 disables it).
        target_modules: which ``nn.Linear`` modules get the adapter. PEFT semantics: a
            sequence of names matches a module whose full dotted name equals an entry or
            ends with ``"." + entry`` (``("query", "value")``); a single string is a
            regular expression matched against the whole name; ``"all-linear"`` takes
            every ``nn.Linear``.
        exclude_modules: names (same matching as a sequence ``target_modules``) to skip.
        use_rslora: rank-stabilised scaling ``alpha / sqrt(r)``.
        init: initialisation of ``A`` and ``B``, a key of :data:`LORA_INITS`:
            ``"kaiming"`` (LoRA/PEFT default: A Kaiming-uniform, B = 0), ``"gaussian"``
            (A ~ N(0, 1/r^2), B = 0), ``"random"`` (both random: the adapter starts
            non-zero; for tests).
    """

    r: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = ALL_LINEAR
    exclude_modules: tuple[str, ...] = ()
    use_rslora: bool = False
    init: str = "kaiming"

    #: name of the adapter kind, saved with the adapter (``"lora"``, ``"allora"``, ...).
    kind: ClassVar[str] = "lora"

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, (list, set)):
            self.target_modules = (
                tuple(sorted(self.target_modules))
                if isinstance(self.target_modules, set)
                else tuple(self.target_modules)
            )
        if isinstance(self.exclude_modules, (list, set, str)):
            self.exclude_modules = (
                (self.exclude_modules,) if isinstance(self.exclude_modules, str) else tuple(self.exclude_modules)
            )
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an invalid value, naming the field and the fix."""
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not math.isfinite(float(self.alpha)) or self.alpha <= 0:
            raise ConfigError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"LoRA dropout must lie in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, str):
            if self.target_modules != ALL_LINEAR:
                try:
                    re.compile(self.target_modules)
                except re.error as e:
                    raise ConfigError(
                        f"target_modules {self.target_modules!r} is not a valid regular "
                        f"expression ({e}); give a list of module names instead"
                    ) from None
        elif not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise ConfigError(
                "target_modules must be a regular expression, 'all-linear', or a non-empty list of "
                f"module names such as ['query', 'value']; got {self.target_modules!r}"
            )
        if self.init not in LORA_INITS:
            raise ConfigError(
                f"unknown LoRA init {self.init!r}; choose one of {sorted(LORA_INITS)} "
                "(or register one with lifelong.adapters.register_lora_init)"
            )

    @property
    def scaling(self) -> float:
        """The factor ``s`` multiplying ``B A``."""
        return float(self.alpha) / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self) -> dict:
        """JSON-able dict of the fields plus ``kind``."""
        d = asdict(self)
        d["target_modules"] = d["target_modules"] if isinstance(d["target_modules"], str) else list(d["target_modules"])
        d["exclude_modules"] = list(d["exclude_modules"])
        return {"kind": self.kind, **d}

    @staticmethod
    def from_dict(d: dict) -> LoRAConfig:
        """Rebuild a config of the right kind from :meth:`to_dict`'s output."""
        d = dict(d)
        kind = d.pop("kind", "lora")
        if kind not in ADAPTER_KINDS:
            raise ConfigError(f"unknown adapter kind {kind!r}; known kinds: {sorted(ADAPTER_KINDS)}")
        cls = ADAPTER_KINDS[kind]
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    @property
    def layer_class(self) -> type[LoRALinear]:
        """The layer class that runs adapters of this kind."""
        from lifelong.adapters.lora.layer import (
            LoRALinear,  # layer.py imports this module: resolve at call time
        )

        return LoRALinear


#: adapter kind -> config class (variants add themselves on import).
ADAPTER_KINDS: dict[str, type[LoRAConfig]] = {"lora": LoRAConfig}


def register_adapter_kind(config_class: type[LoRAConfig]) -> type[LoRAConfig]:
    """Class decorator making a :class:`LoRAConfig` subclass loadable by its ``kind``."""
    ADAPTER_KINDS[config_class.kind] = config_class
    return config_class


# ---- initialisers ------------------------------------------------------------------------------------
InitFn = Callable[["LoRALinear", str, "torch.Generator | None"], None]
#: init name -> ``fn(layer, adapter_name, generator)`` filling ``layer.lora_A[name]`` / ``lora_B[name]``.
LORA_INITS: dict[str, InitFn] = {}


def register_lora_init(name: str) -> Callable[[InitFn], InitFn]:
    """Decorator registering an initialiser ``fn(layer, adapter_name, generator)`` under ``name``.

    Data-dependent inits (CorDA, PiSSA, ...) can read ``layer.base_layer.weight`` and
    may change it (then they must do so deterministically).
    """

    def wrap(fn: InitFn) -> InitFn:
        LORA_INITS[name] = fn
        return fn

    return wrap


__all__ = [
    "ALL_LINEAR",
    "LoRAConfig",
    "ADAPTER_KINDS",
    "register_adapter_kind",
    "InitFn",
    "LORA_INITS",
    "register_lora_init",
]
