"""TriAdaptLoRA-style adaptive rank growth under a parameter budget (seed paper 45, mechanism level).

Liang, Wang, Zeng, *TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation
for Parameter-Efficient Fine-Tuning*, arXiv:2501.08008 (2025). The abstract names three
parts: (1) a triangular split of the transformation matrices into lower and upper
triangular components, (2) an importance metric from normalised Frobenius norms,
(3) rank growth governed by a dynamic (best: linear) threshold.

What is implemented here (only the abstract could be read with the tools available;
the exact parameterisation of (1) is NOT verified, see docs/papers.md):

- each adapted layer holds capacity ``r`` (``config.r``) rank-one components
  ``s * B diag(m) A`` with a 0/1 mask ``m`` (:meth:`LoRALinear.rank_scale`); it starts
  with ``init_rank`` active components and grows one component at a time. A new
  component starts with ``B`` column 0 (LoRA init), so growth never changes the output.
  Inactive components get zero gradient, so only ``k (in + out)`` parameters train.
- importance of layer ``l`` (:func:`layer_importance`): ``||s B_k A_k||_F / sqrt(k (in+out))``
  (Frobenius norm of the update normalised by the active parameter count), then divided
  by the largest over layers, so it lies in [0, 1];
- growth (:class:`RankGrowthController`): every ``delta_t`` steps in ``[t_init, t_final)``
  the threshold falls linearly from 1 to 0; every layer whose normalised importance is
  at least the threshold gains one component (most important first) while the total
  active adapter parameters stay within ``budget``.
- the triangular split (1) is not implemented (its form could not be verified).

Saving: :func:`lifelong.adapters.save_adapter` folds the mask into ``B`` (PEFT loads
it as plain LoRA, exactly); after lifelong's ``load_adapter`` call :func:`restore_ranks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lifelong.adapters.lora import LoRAConfig, LoRALinear, lora_layers, register_adapter_kind
from lifelong.errors import ConfigError


@register_adapter_kind
@dataclass
class TriAdaptLoRAConfig(LoRAConfig):
    """TriAdaptLoRA adapter: capacity ``r`` components per layer, ``init_rank`` of them active at the start.

    The scaling is ``alpha / r`` with the capacity ``r`` (it does not change while ranks grow).
    """

    init_rank: int = 1

    kind: ClassVar[str] = "triadaptlora"

    def validate(self) -> None:
        super().validate()
        if isinstance(self.init_rank, bool) or not isinstance(self.init_rank, int) or not 1 <= self.init_rank <= self.r:
            raise ConfigError(f"TriAdaptLoRA init_rank must be an integer in [1, r={self.r}], got {self.init_rank!r}")

    @property
    def layer_class(self) -> type[LoRALinear]:
        return TriAdaptLoRALinear


class TriAdaptLoRALinear(LoRALinear):
    """:class:`LoRALinear` with a growing 0/1 rank mask per TriAdaptLoRA adapter (a buffer, saved in state_dict)."""

    def add_adapter(self, name: str, config: LoRAConfig, generator: torch.Generator | None = None) -> None:
        super().add_adapter(name, config, generator)
        if isinstance(config, TriAdaptLoRAConfig):
            mask = torch.zeros(config.r, dtype=self.base_layer.weight.dtype, device=self.base_layer.weight.device)
            mask[:config.init_rank] = 1
            self.register_buffer(self._mask_key(name), mask)

    def delete_adapter(self, name: str) -> None:
        super().delete_adapter(name)
        key = self._mask_key(name)
        if key in self._buffers:
            del self._buffers[key]

    @staticmethod
    def _mask_key(name: str) -> str:
        return f"rank_mask_{name}"

    def rank_scale(self, name: str) -> torch.Tensor | None:
        return self._buffers.get(self._mask_key(name))

    def active_rank(self, name: str) -> int:
        """Number of active components of adapter ``name``."""
        m = self.rank_scale(name)
        return self.lora_config[name].r if m is None else int(m.sum())

    def active_parameters(self, name: str) -> int:
        """Trainable parameters in use: ``k (in + out)``."""
        return self.active_rank(name) * (self.in_features + self.out_features)

    @torch.no_grad()
    def grow(self, name: str) -> bool:
        """Activate the next component of adapter ``name``; ``False`` when it is at capacity."""
        m = self.rank_scale(name)
        if m is None:
            raise ConfigError(f"adapter {name!r} is not a TriAdaptLoRA adapter; it has no rank to grow")
        if name in self.merged_adapters:
            raise ConfigError(f"adapter {name!r} is merged; unmerge it before growing its rank")
        k = int(m.sum())
        if k >= m.numel():
            return False
        m[k] = 1
        return True


def _tri_layers(model: nn.Module, name: str) -> dict[str, TriAdaptLoRALinear]:
    layers = {n: m for n, m in lora_layers(model).items()
              if isinstance(m, TriAdaptLoRALinear) and name in m.lora_config and m.rank_scale(name) is not None}
    if not layers:
        raise ConfigError(f"the model has no TriAdaptLoRA adapter named {name!r}; inject a TriAdaptLoRAConfig first")
    return layers


@torch.no_grad()
def layer_importance(model: nn.Module, name: str) -> dict[str, float]:
    """Normalised Frobenius importance per layer: ``||dW||_F / sqrt(active params)``, divided by the max (TriAdaptLoRA)."""
    raw = {}
    for n, m in _tri_layers(model, name).items():
        d = m.delta_weight(name)
        if not torch.isfinite(d).all():
            raise ConfigError(f"layer {n!r}: adapter {name!r} holds NaN/inf; training diverged, lower the lr")
        raw[n] = float(d.norm()) / math.sqrt(m.active_parameters(name))
    top = max(raw.values())
    return {n: (v / top if top > 0 else 1.0) for n, v in raw.items()}


def active_parameter_count(model: nn.Module, name: str) -> int:
    """Total active (trainable in use) parameters of TriAdaptLoRA adapter ``name``."""
    return sum(m.active_parameters(name) for m in _tri_layers(model, name).values())


def ranks(model: nn.Module, name: str) -> dict[str, int]:
    """Active rank of every layer holding TriAdaptLoRA adapter ``name``."""
    return {n: m.active_rank(name) for n, m in _tri_layers(model, name).items()}


@torch.no_grad()
def restore_ranks(model: nn.Module, name: str) -> dict[str, int]:
    """Re-activate the grown components after :func:`lifelong.adapters.load_adapter` (which restores ``init_rank``).

    A saved adapter has the mask folded into ``B`` (exact for HF PEFT); components are
    activated in order, so the active rank is one past the last non-zero ``B`` column
    (at least the current rank). Returns the ranks.
    """
    for m in _tri_layers(model, name).values():
        nz = torch.nonzero(m.lora_B[name].weight.abs().sum(0) > 0).flatten()
        k = max(m.active_rank(name), int(nz.max()) + 1 if nz.numel() else 0)
        m.rank_scale(name)[:k] = 1
    return ranks(model, name)


class RankGrowthController:
    """Grows TriAdaptLoRA ranks by importance under a parameter budget with a linear threshold schedule.

    Call :meth:`step` after every optimizer step with the 0-based step count. ``budget``
    is the maximum total active adapter parameters (e.g. those of fixed-rank LoRA).
    """

    def __init__(self, model: nn.Module, adapter_name: str, budget: int, t_init: int, t_final: int,
                 delta_t: int = 10):
        self.model, self.name = model, adapter_name
        if not (isinstance(budget, int) and budget > 0):
            raise ConfigError(f"budget must be a positive parameter count, got {budget!r}")
        if not (0 <= t_init < t_final) or delta_t < 1:
            raise ConfigError(f"need 0 <= t_init < t_final and delta_t >= 1, got t_init={t_init}, t_final={t_final}, "
                              f"delta_t={delta_t}")
        start = active_parameter_count(model, adapter_name)
        if start > budget:
            raise ConfigError(f"the initial ranks already use {start} parameters, more than the budget {budget}; "
                              "lower init_rank or raise the budget")
        self.budget, self.t_init, self.t_final, self.delta_t = budget, t_init, t_final, delta_t

    def threshold(self, t: int) -> float:
        """Linear threshold: 1 at ``t_init`` down to 0 at ``t_final``."""
        return 1.0 - (t - self.t_init) / (self.t_final - self.t_init)

    def step(self, t: int) -> list[str]:
        """At a growth step, add one component to each layer above the threshold that fits the budget."""
        if t < self.t_init or t >= self.t_final or (t - self.t_init) % self.delta_t:
            return []
        imp = layer_importance(self.model, self.name)
        layers = _tri_layers(self.model, self.name)
        used = active_parameter_count(self.model, self.name)
        tau = self.threshold(t)
        grown = []
        for n in sorted(imp, key=lambda k: -imp[k]):
            m = layers[n]
            cost = m.in_features + m.out_features
            if imp[n] >= tau and used + cost <= self.budget and m.grow(self.name):
                used += cost
                grown.append(n)
        return grown


__all__ = ["TriAdaptLoRAConfig", "TriAdaptLoRALinear", "RankGrowthController", "layer_importance", "restore_ranks",
           "active_parameter_count", "ranks"]
