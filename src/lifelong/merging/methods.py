"""Merge methods as pure functions over stacked task-vector tensors, each registered with a typed config.

A merge method maps the ``n`` experts' deltas of one tensor (stacked, shape ``(n, *shape)``) and
their weights to one merged delta; :func:`lifelong.merging.merge` applies it key by key and
adds ``alpha ×`` the result to the base. Every method is the same pipeline (as mergekit's
generalized task arithmetic): sparsify each delta (optionally rescaled) → weight it → optionally
elect a sign per entry and keep only the agreeing deltas (TIES) → sum, optionally divided by the
summed weights that contributed. The registered methods fix the sparsifier and the consensus:

========================  ==========================  =========  ===============================
name                      sparsifier                  consensus  reference
========================  ==========================  =========  ===============================
``task-arithmetic``       none                        none       arXiv 2212.04089
``ties``                  top-``density`` magnitude   sign       arXiv 2306.01708
``dare-linear``           random, rescaled            none       arXiv 2311.03099
``dare-ties``             random, rescaled            sign       arXiv 2311.03099
``breadcrumbs``           band (drop γ top, keep β)   none       arXiv 2312.06795
``breadcrumbs-ties``      band (drop γ top, keep β)   sign       arXiv 2312.06795 (mergekit)
========================  ==========================  =========  ===============================
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import torch

from lifelong.errors import ConfigError, unknown_name
from lifelong.merging.sparsify import RESCALES, breadcrumbs_mask, magnitude_mask, random_mask, rescale
from lifelong.values import parse_value

SIGNS: tuple[str, ...] = ("sum", "count")


def hp(default: Any, help: str) -> Any:
    """A config field with a default and a help string."""
    return field(default=default, metadata={"help": help})


def _fraction(name: str, value: float, low_open: bool = True) -> None:
    ok = (0 < value <= 1) if low_open else (0 <= value < 1)
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        span = "(0, 1]" if low_open else "[0, 1)"
        raise ConfigError(f"{name} must lie in {span}, got {value}; it is a fraction of each tensor's entries")


@dataclass(frozen=True)
class MergeConfig:
    """Settings every merge method has."""

    alpha: float = hp(1.0, "scale λ of the merged task vector: θ = θ_base + λ · merged delta (mergekit 'lambda')")

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the fix when a value is out of range."""
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)):
            raise ConfigError(f"alpha must be a finite number, got {self.alpha}; 0.2-1.0 are usual values")

    def to_dict(self) -> dict:
        """JSON-able dict of every field."""
        return asdict(self)


@dataclass(frozen=True)
class TaskArithmeticConfig(MergeConfig):
    """Task arithmetic: θ = θ_base + λ Σ w_t τ_t."""

    normalize: bool = hp(False, "divide the weighted sum by the summed weights (a weighted mean)")


@dataclass(frozen=True)
class _SignConfig(MergeConfig):
    sign: str = hp("sum", "sign election: sum (sign of the summed deltas, TIES) | count (majority of signs)")

    def validate(self) -> None:
        super().validate()
        if self.sign not in SIGNS:
            raise ConfigError(f"sign must be one of: {', '.join(SIGNS)}; got {self.sign!r}")


@dataclass(frozen=True)
class TIESConfig(_SignConfig):
    """TIES: trim to the top-``density`` magnitudes, elect a sign, average the agreeing deltas."""

    density: float = hp(0.2, "fraction of each tensor's entries kept by magnitude (TIES' k = 20 %)")
    normalize: bool = hp(True, "disjoint mean: divide by the summed weights of the deltas that agree with the sign")

    def validate(self) -> None:
        super().validate()
        _fraction("density", self.density)


@dataclass(frozen=True)
class DAREConfig(MergeConfig):
    """DARE (linear): drop each entry with probability 1 − density, rescale the rest, sum."""

    density: float = hp(0.1, "probability of keeping each entry (DARE drops p = 0.9, so density 0.1)")
    rescale: str = hp("inverse", "inverse (divide by density: DARE, PEFT) | l1 (match the L1 norm: mergekit) | none")

    def validate(self) -> None:
        super().validate()
        _fraction("density", self.density)
        if self.rescale not in RESCALES:
            raise ConfigError(f"rescale must be one of: {', '.join(RESCALES)}; got {self.rescale!r}")


@dataclass(frozen=True)
class DARETIESConfig(DAREConfig, _SignConfig):
    """DARE then TIES' sign election."""

    normalize: bool = hp(False, "divide by the summed weights of the agreeing deltas (mergekit: no, PEFT: yes)")


@dataclass(frozen=True)
class BreadcrumbsConfig(MergeConfig):
    """Model Breadcrumbs: per tensor, drop the γ largest-magnitude outliers and all but the next β; sum."""

    alpha: float = hp(0.2, "scale λ of the summed masked task vectors (official search starts at 0.2)")
    density: float = hp(0.15, "β, fraction kept after the outliers (official search U(0.05, 0.20), start 0.15)")
    gamma: float = hp(0.006, "γ, fraction of largest magnitudes dropped (official U(0.001, 0.01), start 0.006)")
    per_row: bool = hp(True, "rank within each row of the last dim (official code); false: whole tensor (mergekit)")

    def validate(self) -> None:
        super().validate()
        _fraction("density", self.density)
        _fraction("gamma", self.gamma, low_open=False)
        if self.density + self.gamma > 1:
            raise ConfigError(
                f"density + gamma must be <= 1 (keep β after dropping the top γ), got {self.density} + {self.gamma}; "
                f"lower one of them"
            )


@dataclass(frozen=True)
class BreadcrumbsTIESConfig(BreadcrumbsConfig, _SignConfig):
    """Breadcrumbs masks then TIES' sign election (mergekit's ``breadcrumbs_ties``)."""

    normalize: bool = hp(False, "divide by the summed weights of the agreeing deltas")


@dataclass(frozen=True)
class MergeMethod:
    """One registered merge method: its name, config class and per-tensor function."""

    name: str
    config_class: type[MergeConfig]
    fn: Callable[..., torch.Tensor] = field(repr=False)
    summary: str = ""


_REGISTRY: dict[str, MergeMethod] = {}


def register_merge(name: str, config_class: type[MergeConfig]) -> Callable:
    """Decorator: register ``fn(deltas, weights, config, generator) -> merged delta`` under ``name``."""

    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ConfigError(f"merge method {name!r} is registered twice; give the new one another name")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = MergeMethod(name, config_class, fn, summary)
        return fn

    return wrap


def merge_methods() -> list[str]:
    """Names of the registered merge methods."""
    return sorted(_REGISTRY)


def get_merge_method(name: str) -> MergeMethod:
    """The merge method ``name`` (``_`` and ``-`` are the same: ``dare_ties`` is ``dare-ties``)."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise unknown_name("merge method", name, _REGISTRY)
    return _REGISTRY[key]


def merge_config(method: str, overrides: Mapping[str, Any] | None = None) -> MergeConfig:
    """The validated config of ``method`` with ``overrides`` (values or strings such as ``"0.1"``) applied.

    Raises:
        ConfigError: unknown method, unknown key (the valid keys listed), a mistyped or out-of-range value.
    """
    cls = get_merge_method(method).config_class
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    values = {}
    for key, value in (overrides or {}).items():
        if key not in valid:
            raise ConfigError(f"unknown setting {key!r} of merge method {method}; valid keys: {', '.join(valid)}")
        values[key] = parse_value(key, value, hints[key], where=f"merge method {method} setting")
    config = cls(**values)
    config.validate()
    return config


def config_help(method: str) -> list[dict]:
    """Name, type, default and help of each setting of ``method``'s config."""
    cls = get_merge_method(method).config_class
    hints = typing.get_type_hints(cls)
    return [
        {
            "name": f.name,
            "type": getattr(hints[f.name], "__name__", str(hints[f.name])),
            "default": None if f.default is MISSING else f.default,
            "help": f.metadata.get("help", ""),
        }
        for f in fields(cls)
    ]


def _combine(deltas: torch.Tensor, weights: torch.Tensor, sign: str | None, normalize: bool) -> torch.Tensor:
    """Σ_t w_t δ_t over the experts (dim 0), keeping only deltas that agree with the elected sign when ``sign``."""
    w = weights.to(deltas.dtype).reshape(-1, *([1] * (deltas.dim() - 1)))
    weighted = deltas * w
    if sign is None:
        mixed = weighted.sum(0)
        divisor = w.sum(0)
        divisor = torch.where(divisor.abs() < 1e-8, torch.ones_like(divisor), divisor)
    else:
        mask = elect_sign(weighted, sign)
        mixed = (weighted * mask).sum(0)
        divisor = (w * mask).sum(0)
        divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    return mixed / divisor if normalize else mixed


def elect_sign(deltas: torch.Tensor, method: str = "sum") -> torch.Tensor:
    """TIES' sign election over dim 0: True where a delta's sign equals the elected one (zeros never agree).

    ``sum``: the sign of the summed deltas; ``count``: the sign held by more deltas; ties elect ``+``.
    """
    signs = deltas.sign()
    if method == "sum":
        total = deltas.sum(0)
    elif method == "count":
        total = signs.sum(0)
    else:
        raise ConfigError(f"sign must be one of: {', '.join(SIGNS)}; got {method!r}")
    elected = torch.where(total >= 0, 1.0, -1.0).to(signs.dtype)
    return signs == elected


@register_merge("task-arithmetic", TaskArithmeticConfig)
def task_arithmetic(
    deltas: torch.Tensor, weights: torch.Tensor, config: TaskArithmeticConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Weighted sum of the task vectors (arXiv 2212.04089)."""
    return _combine(deltas, weights, None, config.normalize)


@register_merge("ties", TIESConfig)
def ties(
    deltas: torch.Tensor, weights: torch.Tensor, config: TIESConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Trim to the top-density magnitudes, elect signs, disjoint mean (arXiv 2306.01708)."""
    trimmed = torch.stack([d * magnitude_mask(d, config.density) for d in deltas])
    return _combine(trimmed, weights, config.sign, config.normalize)


def _dare(deltas: torch.Tensor, config: DAREConfig, generator: torch.Generator | None) -> torch.Tensor:
    # one Bernoulli draw per expert, in order (the same stream as mergekit's and PEFT's loops)
    return torch.stack(
        [rescale(d, random_mask(d, config.density, generator), config.rescale, config.density) for d in deltas]
    )


@register_merge("dare-linear", DAREConfig)
def dare_linear(
    deltas: torch.Tensor, weights: torch.Tensor, config: DAREConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random drop with rescaling, then a weighted sum (arXiv 2311.03099)."""
    return _combine(_dare(deltas, config, generator), weights, None, False)


@register_merge("dare-ties", DARETIESConfig)
def dare_ties(
    deltas: torch.Tensor, weights: torch.Tensor, config: DARETIESConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random drop with rescaling, then TIES' sign election (arXiv 2311.03099)."""
    return _combine(_dare(deltas, config, generator), weights, config.sign, config.normalize)


def _crumbs(deltas: torch.Tensor, config: BreadcrumbsConfig) -> torch.Tensor:
    return torch.stack([d * breadcrumbs_mask(d, config.density, config.gamma, config.per_row) for d in deltas])


@register_merge("breadcrumbs", BreadcrumbsConfig)
def breadcrumbs(
    deltas: torch.Tensor, weights: torch.Tensor, config: BreadcrumbsConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Drop outliers and small entries per tensor (or row), then sum (arXiv 2312.06795)."""
    return _combine(_crumbs(deltas, config), weights, None, False)


@register_merge("breadcrumbs-ties", BreadcrumbsTIESConfig)
def breadcrumbs_ties(
    deltas: torch.Tensor, weights: torch.Tensor, config: BreadcrumbsTIESConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Breadcrumbs masks, then TIES' sign election (mergekit's breadcrumbs_ties)."""
    return _combine(_crumbs(deltas, config), weights, config.sign, config.normalize)


__all__ = [
    "SIGNS",
    "MergeConfig",
    "TaskArithmeticConfig",
    "TIESConfig",
    "DAREConfig",
    "DARETIESConfig",
    "BreadcrumbsConfig",
    "BreadcrumbsTIESConfig",
    "MergeMethod",
    "register_merge",
    "merge_methods",
    "get_merge_method",
    "merge_config",
    "config_help",
    "elect_sign",
    "task_arithmetic",
    "ties",
    "dare_linear",
    "dare_ties",
    "breadcrumbs",
    "breadcrumbs_ties",
]
