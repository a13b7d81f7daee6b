"""The LoRA layer: :class:`LoRALinear` wraps a stock ``nn.Linear`` and holds named adapters.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022 (arXiv:2106.09685):
``W x + b`` becomes ``W x + b + s * B A dropout(x)`` with ``A`` (r x in), ``B`` (out x r) and
``s = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA). The layout follows HF PEFT's
``peft.tuners.lora.layer`` (``base_layer``, ``lora_A`` / ``lora_B`` ``ModuleDict`` s), so
adapters save in PEFT's format. Also here: the built-in initialisers and :class:`SeededDropout`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.adapters.lora.config import LORA_INITS, LoRAConfig, register_lora_init
from lifelong.errors import AdapterError, ConfigError


# ---- built-in initialisers (keys of LORA_INITS) ----------------------------------------------------
@register_lora_init("kaiming")
def _init_kaiming(layer: LoRALinear, name: str, generator: torch.Generator | None) -> None:
    """A as ``nn.Linear`` (Kaiming-uniform, a = sqrt(5)), B = 0 (LoRA paper, PEFT ``init_lora_weights=True``)."""
    nn.init.kaiming_uniform_(layer.lora_A[name].weight, a=math.sqrt(5), generator=generator)
    nn.init.zeros_(layer.lora_B[name].weight)


@register_lora_init("gaussian")
def _init_gaussian(layer: LoRALinear, name: str, generator: torch.Generator | None) -> None:
    """A ~ N(0, (1/r)^2), B = 0 (PEFT ``init_lora_weights="gaussian"``)."""
    nn.init.normal_(layer.lora_A[name].weight, std=1.0 / layer.lora_config[name].r, generator=generator)
    nn.init.zeros_(layer.lora_B[name].weight)


@register_lora_init("random")
def _init_random(layer: LoRALinear, name: str, generator: torch.Generator | None) -> None:
    """Both factors Kaiming-uniform (PEFT ``init_lora_weights=False``): a non-zero update from the start."""
    nn.init.kaiming_uniform_(layer.lora_A[name].weight, a=math.sqrt(5), generator=generator)
    nn.init.kaiming_uniform_(layer.lora_B[name].weight, a=math.sqrt(5), generator=generator)


# ---- the layer -------------------------------------------------------------------------------------
class SeededDropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014) whose masks come from ``generator`` when one is set.

    With the learner's own generator, dropout masks are part of its reproducible state
    (a resumed run draws the same masks); without one it uses torch's global RNG like
    ``nn.Dropout``.
    """

    def __init__(self, p: float, generator: torch.Generator | None = None):
        super().__init__()
        self.p = float(p)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero each entry with probability ``p`` and rescale the rest by ``1 / (1 - p)`` (training only)."""
        if not self.training or self.p == 0.0:
            return x
        g = self.generator
        if g is None:
            keep = torch.rand(x.shape, device=x.device) >= self.p
        else:
            keep = (torch.rand(x.shape, generator=g, device=g.device) >= self.p).to(x.device)
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WrappedLinear(nn.Module):
    """Base of the adapter layers that wrap a stock ``nn.Linear`` as ``self.base_layer``: its sizes read through."""

    base_layer: nn.Linear

    @property
    def in_features(self) -> int:
        """Input size of the wrapped layer."""
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        """Output size of the wrapped layer."""
        return self.base_layer.out_features


class LoRALinear(WrappedLinear):
    """An ``nn.Linear`` plus any number of named LoRA adapters (Hu et al. 2022, arXiv:2106.09685).

    ``forward(x) = base_layer(x) + sum over active, unmerged adapters of lora_delta(x, name)``.
    Merged adapters live inside ``base_layer.weight``. Subclasses (variants) change the
    initialisation (:meth:`reset_lora_parameters`, which dispatches to the :data:`LORA_INITS`
    registry), add per-rank gates or masks (:meth:`rank_scale`, folded into ``B`` when merged
    or exported) or change the adapter's computation (:meth:`lora_delta`, e.g. a custom
    autograd rule as in :mod:`lifelong.adapters.allora`).
    """

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ConfigError(f"LoRALinear wraps an nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.lora_config: dict[str, LoRAConfig] = {}
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self._weight_backup: torch.Tensor | None = None

    # ---- the wrapped layer's attributes (code that reads .weight / .in_features keeps working) ----
    @property
    def weight(self) -> torch.Tensor:
        """The wrapped layer's weight (holds the merged adapters)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The wrapped layer's bias."""
        return self.base_layer.bias

    @property
    def adapter_names(self) -> list[str]:
        """Names of the adapters this layer holds, in the order they were added."""
        return list(self.lora_config)

    # ---- adapters -------------------------------------------------------------------------------
    def add_adapter(self, name: str, config: LoRAConfig, generator: torch.Generator | None = None) -> None:
        """Create adapter ``name`` (rank ``config.r``) and initialise it with ``config.init``.

        ``generator`` (optional) drives the initialisation and the adapter's dropout masks.
        """
        if name in self.lora_config:
            raise AdapterError(
                f"this layer already has an adapter named {name!r}; pick another name or delete_adapter() it first"
            )
        if config.r > min(self.in_features, self.out_features):
            raise ConfigError(
                f"rank {config.r} is larger than this layer allows: min(in={self.in_features}, "
                f"out={self.out_features}) = {min(self.in_features, self.out_features)}"
            )
        w = self.base_layer.weight
        self.lora_config[name] = config
        self.lora_A[name] = nn.Linear(self.in_features, config.r, bias=False, device=w.device, dtype=w.dtype)
        self.lora_B[name] = nn.Linear(config.r, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        self.lora_dropout[name] = SeededDropout(config.dropout, generator) if config.dropout > 0 else nn.Identity()
        for mod in (self.lora_A[name], self.lora_B[name], self.lora_dropout[name]):
            mod.train(self.training)
        with torch.no_grad():
            self.reset_lora_parameters(name, generator)

    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None) -> None:
        """Initialise adapter ``name`` with its config's ``init`` (override for custom inits)."""
        LORA_INITS[self.lora_config[name].init](self, name, generator)

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name`` (it must not be merged)."""
        self._require(name)
        if name in self.merged_adapters:
            raise AdapterError(
                f"adapter {name!r} is merged into the base weight; unmerge it before deleting "
                "it, or use fold_adapter() to keep its effect"
            )
        del self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
        del self.lora_config[name]
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def _require(self, name: str) -> None:
        if name not in self.lora_config:
            raise AdapterError(f"no adapter named {name!r} in this layer; it has {self.adapter_names or 'none'}")

    def scaling(self, name: str) -> float:
        """The factor multiplying ``B A`` for adapter ``name``."""
        return self.lora_config[name].scaling

    def rank_scale(self, name: str) -> torch.Tensor | None:
        """Per-rank multipliers ``g`` (shape ``(r,)``) so the update is ``s * B diag(g) A``; ``None`` = all ones.

        Override to add gates or masks over the rank components (e.g. TriAdaptLoRA,
        CoDyRA); the forward pass, merging and PEFT export all use it.
        """
        return None

    # ---- computation ----------------------------------------------------------------------------
    def lora_delta(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Output of adapter ``name``: ``s * B diag(g) A dropout(x)`` (override to change the rule)."""
        a = self.lora_A[name].weight
        h = F.linear(self.lora_dropout[name](x.to(a.dtype)), a)
        g = self.rank_scale(name)
        if g is not None:
            h = h * g
        return F.linear(h, self.lora_B[name].weight) * self.scaling(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the output of every active adapter not merged into the weight."""
        out = self.base_layer(x)
        for name in self.active_adapters:
            if name not in self.merged_adapters:
                out = out + self.lora_delta(x, name).to(out.dtype)
        return out

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B_eff)`` with the per-rank scale folded into ``B`` (``delta = s * B_eff A``)."""
        self._require(name)
        a, b = self.lora_A[name].weight, self.lora_B[name].weight
        g = self.rank_scale(name)
        return a, (b if g is None else b * g.to(b.dtype))

    def delta_weight(self, name: str) -> torch.Tensor:
        """The dense update ``s * B diag(g) A`` (out x in), computed in float32."""
        a, b = self.factors(name)
        return (b.float() @ a.float()) * self.scaling(name)

    # ---- merging --------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self, names: Sequence[str] | None = None, exact: bool = True) -> None:
        """Add the listed adapters (default: the active ones) into ``base_layer.weight``.

        Raises :class:`AdapterError` for an adapter merged already or holding NaN/inf.
        With ``exact`` the original weight is kept so that unmerging all restores it bit for bit.
        """
        names = list(self.active_adapters if names is None else names)
        for name in names:
            self._require(name)
            if name in self.merged_adapters:
                raise AdapterError(
                    f"adapter {name!r} is already merged; merging it twice would add its update "
                    "twice. Call unmerge_adapters() first"
                )
            self._check_finite(name)
        w = self.base_layer.weight
        if exact and self._weight_backup is None and not self.merged_adapters and names:
            self._weight_backup = w.detach().clone()
        for name in names:
            w.add_(self.delta_weight(name).to(w.dtype))
            self.merged_adapters.append(name)

    @torch.no_grad()
    def unmerge(self, names: Sequence[str] | None = None) -> None:
        """Take the listed adapters (default: all merged) back out of the base weight."""
        names = list(self.merged_adapters if names is None else names)
        for name in names:
            self._require(name)
            if name not in self.merged_adapters:
                raise AdapterError(
                    f"adapter {name!r} is not merged, so it cannot be unmerged; merged: "
                    f"{self.merged_adapters or 'none'}"
                )
        w = self.base_layer.weight
        remaining = [n for n in self.merged_adapters if n not in names]
        if not remaining and self._weight_backup is not None:
            w.copy_(self._weight_backup)
        else:
            for name in reversed(names):
                w.sub_(self.delta_weight(name).to(w.dtype))
        self.merged_adapters = remaining
        if not remaining:
            self._weight_backup = None

    @torch.no_grad()
    def fold(self, name: str) -> None:
        """Merge adapter ``name`` into the base weight for good and delete it (no backup kept)."""
        self._require(name)
        if name in self.merged_adapters:
            raise AdapterError(f"adapter {name!r} is already merged; unmerge it before folding it")
        if self.merged_adapters:
            raise AdapterError(f"unmerge the merged adapters {self.merged_adapters} before folding {name!r}")
        self._check_finite(name)
        w = self.base_layer.weight
        w.add_(self.delta_weight(name).to(w.dtype))
        self.delete_adapter(name)

    def _check_finite(self, name: str) -> None:
        for part, mod in (("lora_A", self.lora_A[name]), ("lora_B", self.lora_B[name])):
            if not torch.isfinite(mod.weight).all():
                raise AdapterError(
                    f"adapter {name!r} has NaN or inf in {part}; training diverged or the file "
                    "is corrupt. Delete the adapter (or reload a good copy) and lower the lr"
                )

    def adopt(self, other: LoRALinear) -> None:
        """Take over the base layer and every adapter of ``other`` (used to upgrade a layer to a subclass)."""
        self.base_layer = other.base_layer
        self.lora_A, self.lora_B, self.lora_dropout = other.lora_A, other.lora_B, other.lora_dropout
        self.lora_config = dict(other.lora_config)
        self.active_adapters = list(other.active_adapters)
        self.merged_adapters = list(other.merged_adapters)
        self._weight_backup = other._weight_backup
        self.train(other.training)

    def extra_repr(self) -> str:
        parts = [
            f"{n}: r={c.r}, s={c.scaling:g}{' (merged)' if n in self.merged_adapters else ''}"
            for n, c in self.lora_config.items()
        ]
        return f"adapters=[{'; '.join(parts)}], active={self.active_adapters}"


__all__ = ["LoRALinear", "SeededDropout"]
