"""CoDyRA: dynamic rank-selective LoRA with per-rank importance gates.

Adaptive Rank, Reduced Forgetting: Knowledge Retention in Continual Learning Vision-Language Models with
Dynamic Rank-Selective LoRA (arXiv 2412.01004). Each adapted ``nn.Linear`` gets ``dW = s B diag(lambda) A``;
after each optimizer step a soft threshold on the gates (:func:`proximal_step`, schedule
:class:`KappaSchedule`) zeroes unneeded components, so each layer keeps its own rank (:func:`effective_ranks`).
After a task :func:`merge_and_reset` folds the update into the weight and starts a fresh adapter. Saving
folds ``lambda`` into ``B`` (plain LoRA for HF PEFT); after lifelong's ``load_adapter`` call :func:`restore_gates`.

Notes: docs/papers/codyra.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lifelong.adapters.lora import (
    AdapterError,
    LoRAConfig,
    LoRALinear,
    fold_adapter,
    inject_adapter,
    lora_layers,
    register_adapter_kind,
)
from lifelong.errors import ConfigError

GATE_INITS = ("normal", "ones")


@register_adapter_kind
@dataclass
class CoDyRAConfig(LoRAConfig):
    """CoDyRA adapter: rank budget ``r`` (16 in the paper) with a trainable importance gate per rank component.

    Attributes (besides :class:`LoRAConfig`'s):
        alpha: left ``None`` it becomes ``r`` (scaling 1, as in the official code).
        gate_init: ``"normal"`` (lambda ~ N(0, 1), the official code) or ``"ones"``.
    """

    r: int = 16
    alpha: float | None = None
    gate_init: str = "normal"

    kind: ClassVar[str] = "codyra"

    def __post_init__(self) -> None:
        if self.alpha is None and isinstance(self.r, int) and not isinstance(self.r, bool):
            self.alpha = float(self.r)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.gate_init not in GATE_INITS:
            raise ConfigError(f"CoDyRA gate_init must be one of {GATE_INITS}, got {self.gate_init!r}")

    @property
    def layer_class(self) -> type[LoRALinear]:
        return CoDyRALinear


class CoDyRALinear(LoRALinear):
    """:class:`LoRALinear` whose CoDyRA adapters carry a trainable importance gate ``lambda`` (shape ``(r,)``).

    The gate is applied through :meth:`rank_scale` (so the forward pass, merging and PEFT
    export fold it into ``B``) and returned by :meth:`extra_adapter_parameters` (so
    :func:`lifelong.adapters.adapter_parameters` hands it to the optimizer).
    """

    def __init__(self, base_layer: nn.Linear):
        super().__init__(base_layer)
        self.lora_gate = nn.ParameterDict()

    def add_adapter(self, name: str, config: LoRAConfig, generator: torch.Generator | None = None) -> None:
        super().add_adapter(name, config, generator)
        if isinstance(config, CoDyRAConfig):
            w = self.base_layer.weight
            if config.gate_init == "ones":
                gate = torch.ones(config.r, dtype=w.dtype)
            else:
                gate = torch.randn(config.r, generator=generator, dtype=w.dtype)
            self.lora_gate[name] = nn.Parameter(gate.to(w.device))

    def delete_adapter(self, name: str) -> None:
        super().delete_adapter(name)
        if name in self.lora_gate:
            del self.lora_gate[name]

    def adopt(self, other: LoRALinear) -> None:
        super().adopt(other)
        if isinstance(other, CoDyRALinear):
            self.lora_gate = other.lora_gate

    def rank_scale(self, name: str) -> torch.Tensor | None:
        """The importance gate ``lambda`` of adapter ``name`` (``None`` for a plain LoRA adapter)."""
        return self.lora_gate[name] if name in self.lora_gate else None

    def extra_adapter_parameters(self, name: str) -> list[nn.Parameter]:
        """``[lambda]`` for a CoDyRA adapter: trained with A and B (same optimizer, same lr)."""
        return [self.lora_gate[name]] if name in self.lora_gate else []

    def effective_rank(self, name: str) -> int:
        """Number of non-zero gates of adapter ``name`` (its rank after pruning)."""
        g = self.rank_scale(name)
        return self.lora_config[name].r if g is None else int(torch.count_nonzero(g.detach()))

    def _check_finite(self, name: str) -> None:
        super()._check_finite(name)
        g = self.rank_scale(name)
        if g is not None and not torch.isfinite(g).all():
            raise AdapterError(f"adapter {name!r} has NaN or inf in its CoDyRA gate; training diverged. Lower the lr")


# ---- model-level operations -------------------------------------------------------------------------
def codyra_layers(model: nn.Module, name: str) -> dict[str, CoDyRALinear]:
    """The layers of ``model`` holding CoDyRA adapter ``name``, by module name."""
    layers = {n: m for n, m in lora_layers(model).items() if isinstance(m, CoDyRALinear) and name in m.lora_gate}
    if not layers:
        raise AdapterError(f"the model has no CoDyRA adapter named {name!r}; inject a CoDyRAConfig adapter first")
    return layers


def gate_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """The importance gates of CoDyRA adapter ``name`` (one per layer, model order)."""
    return [m.lora_gate[name] for m in codyra_layers(model, name).values()]


def soft_threshold(x: torch.Tensor, t: float) -> torch.Tensor:
    """The proximal operator of ``t * ||x||_1``: ``sign(x) * max(|x| - t, 0)`` (CoDyRA's gate update)."""
    return torch.sign(x) * (x.abs() - t).clamp_min(0.0)


@torch.no_grad()
def proximal_step(gates: nn.Module | list[torch.Tensor], threshold: float, name: str | None = None) -> int:
    """Soft-threshold every gate in place by ``threshold`` in one vectorised op; returns the zero-gate count.

    ``gates`` is a list of gate tensors or a model (then ``name`` picks the adapter).
    CoDyRA runs this after each optimizer step of the sparse phase (Lu et al. 2024).
    """
    if isinstance(gates, nn.Module):
        if name is None:
            raise ConfigError("proximal_step on a model needs the adapter name")
        gates = gate_parameters(gates, name)
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"the proximal threshold must be a finite number >= 0, got {threshold!r}")
    if not gates:
        return 0
    flat = torch.cat([g.detach().reshape(-1) for g in gates])
    if threshold > 0:
        flat = soft_threshold(flat, threshold)
        torch._foreach_copy_(
            [g.data for g in gates],
            [p.view_as(g) for p, g in zip(torch.split(flat, [g.numel() for g in gates]), gates)],
        )
    return int((flat == 0).sum())


def effective_ranks(model: nn.Module, name: str) -> dict[str, int]:
    """Non-zero gates per layer of CoDyRA adapter ``name`` (each layer's effective rank)."""
    return {n: m.effective_rank(name) for n, m in codyra_layers(model, name).items()}


def merge_and_reset(
    model: nn.Module,
    name: str,
    config: CoDyRAConfig | None = None,
    new_name: str | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, int]:
    """Fold adapter ``name`` into the weights (``W <- W + s B diag(lambda) A``), delete it, optionally start a new one.

    Returns the effective ranks merged. With ``new_name`` (and ``config``) a fresh CoDyRA
    adapter (A Kaiming, B = 0, new gates) is injected and made active, its parameters
    trainable, the rest of the model left as it is. The model then holds no parameter
    of the old adapter: inference costs nothing extra (CoDyRA's merge after each task).
    """
    ranks = effective_ranks(model, name)
    fold_adapter(model, name)
    if new_name is not None:
        if config is None:
            raise ConfigError("merge_and_reset needs the CoDyRAConfig of the new adapter")
        inject_adapter(model, config, new_name, generator=generator, freeze_base=False, activate=True)
        from lifelong.adapters.lora import adapter_parameters

        for p in adapter_parameters(model, new_name):
            p.requires_grad_(True)
    return ranks


@torch.no_grad()
def restore_gates(model: nn.Module, name: str) -> dict[str, int]:
    """Reset the gates of CoDyRA adapter ``name`` after :func:`lifelong.adapters.load_adapter`; returns effective ranks.

    A saved CoDyRA adapter has ``lambda`` folded into ``B`` (so HF PEFT loads it as plain
    LoRA, exactly); lifelong's loader gives it fresh gates. This sets each gate to 1
    where the saved ``B`` column is non-zero and to 0 where it is zero (a pruned component),
    which restores the saved function and effective ranks.
    """
    for m in codyra_layers(model, name).values():
        alive = m.lora_B[name].weight.abs().sum(0) > 0
        m.lora_gate[name].copy_(alive.to(m.lora_gate[name].dtype))
    return effective_ranks(model, name)


class KappaSchedule:
    """CoDyRA's sparsity threshold per step: dense warm-up, then a linear staircase up to the peak.

    For a task of ``T = total_steps`` optimizer steps: no sparsity during the first
    ``D = ceil(dense_fraction * T)`` steps; after step ``t > D`` (1-based) the threshold is
    ``peak * k / (levels - 1)`` with ``k = min(levels - 1, (t - D - 1) // L + 1)`` and
    ``L = max(1, (T - D) // levels)``: the official code's staircase over ``linspace(0, kappa,
    levels)``. When the sparse phase has fewer than ``levels`` steps, ``levels`` becomes
    ``T - D + 1`` so the staircase still reaches the peak at the task's last step (the
    official integer division would give a zero step and no sparsity at all). With
    ``reference_steps > 0`` the peak is ``max_kappa * reference_steps / T``, so a task of any
    length shrinks the gates by the same total as a ``reference_steps``-step run (500 in the
    official runner); ``reference_steps = 0`` uses ``max_kappa`` as is.
    """

    def __init__(
        self,
        total_steps: int,
        max_kappa: float,
        dense_fraction: float = 0.5,
        levels: int = 50,
        reference_steps: int = 0,
    ):
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
        if not (math.isfinite(max_kappa) and max_kappa >= 0):
            raise ConfigError(f"kappa must be a finite number >= 0, got {max_kappa!r}")
        if not 0.0 <= dense_fraction < 1.0:
            raise ConfigError(f"dense_fraction must lie in [0, 1), got {dense_fraction!r}")
        if levels < 2:
            raise ConfigError(f"kappa levels must be >= 2, got {levels}")
        if reference_steps < 0:
            raise ConfigError(f"reference_steps must be >= 0 (0: no rescaling), got {reference_steps}")
        self.total = int(total_steps)
        self.dense = min(math.ceil(dense_fraction * total_steps), self.total - 1)
        sparse = self.total - self.dense
        self.levels = int(min(levels, sparse + 1))
        self.peak = float(max_kappa) * (reference_steps / total_steps if reference_steps else 1.0)
        self.step_len = max(1, sparse // self.levels)

    def __call__(self, step: int) -> float:
        """Threshold to apply after optimizer step ``step`` (1-based); 0 in the dense phase."""
        if step <= self.dense:
            return 0.0
        k = min(self.levels - 1, (step - self.dense - 1) // self.step_len + 1)
        return self.peak * k / (self.levels - 1)

    def total_shrinkage(self) -> float:
        """Sum of the thresholds over the task: how far a gate with no gradient moves towards 0."""
        return float(sum(self(t) for t in range(1, self.total + 1)))


__all__ = [
    "CoDyRAConfig",
    "CoDyRALinear",
    "GATE_INITS",
    "KappaSchedule",
    "codyra_layers",
    "gate_parameters",
    "soft_threshold",
    "proximal_step",
    "effective_ranks",
    "merge_and_reset",
    "restore_gates",
]
