"""TriAdaptLoRA: triangular split of the low-rank increment with budgeted rank growth.

TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation for Parameter-Efficient Fine-Tuning
(arXiv 2501.08008), parameterised after a public PEFT-fork implementation (the paper's method section could
not be read). Triangular mode (default): ``dW = s B (tril L + triu U) A``; the core grows one row and one
column per rank where the importance (increase of ``||C - I||_F / k``, :class:`TriangularGrowthController`)
passes a linear top-n threshold, within a parameter budget. Mask mode (``triangular=False``): rank-one
components and :class:`RankGrowthController`. Saved as plain LoRA; after ``load_adapter`` call :func:`restore_ranks`.

Notes: docs/papers/triadaptlora.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.adapters.lora import LoRAConfig, LoRALinear, lora_layers, register_adapter_kind
from lifelong.errors import AdapterError, ConfigError


@register_adapter_kind
@dataclass
class TriAdaptLoRAConfig(LoRAConfig):
    """TriAdaptLoRA adapter: capacity ``r`` per layer, ``init_rank`` active at the start (arXiv:2501.08008).

    ``triangular`` selects the paper's ``B (tril(L) + triu(U)) A`` parameterisation (default)
    or the mask-only ablation ``B diag(m) A``. The scaling is ``alpha / r`` with the capacity
    ``r`` (it does not change while ranks grow).
    """

    init_rank: int = 1
    triangular: bool = True

    kind: ClassVar[str] = "triadaptlora"

    def validate(self) -> None:
        super().validate()
        if isinstance(self.init_rank, bool) or not isinstance(self.init_rank, int) or not 1 <= self.init_rank <= self.r:
            raise ConfigError(f"TriAdaptLoRA init_rank must be an integer in [1, r={self.r}], got {self.init_rank!r}")
        if not isinstance(self.triangular, bool):
            raise ConfigError(f"TriAdaptLoRA triangular must be True or False, got {self.triangular!r}")

    @property
    def layer_class(self) -> type[LoRALinear]:
        return TriAdaptLoRALinear


class TriAdaptLoRALinear(LoRALinear):
    """:class:`LoRALinear` with a growing 0/1 rank mask and (triangular mode) a core ``C = tril(L) + triu(U)``.

    The mask is a buffer and ``L``/``U`` are parameters (``lora_C_lower`` / ``lora_C_upper``),
    all saved in ``state_dict`` (TriAdaptLoRA, arXiv:2501.08008).
    """

    def __init__(self, base_layer: nn.Linear):
        super().__init__(base_layer)
        self.lora_C_lower = nn.ParameterDict()
        self.lora_C_upper = nn.ParameterDict()

    def add_adapter(self, name: str, config: LoRAConfig, generator: torch.Generator | None = None) -> None:
        super().add_adapter(name, config, generator)
        if isinstance(config, TriAdaptLoRAConfig):
            w = self.base_layer.weight
            mask = torch.zeros(config.r, dtype=w.dtype, device=w.device)
            mask[: config.init_rank] = 1
            self.register_buffer(self._mask_key(name), mask)
            if config.triangular:
                self.lora_C_lower[name] = nn.Parameter(torch.eye(config.r, dtype=w.dtype, device=w.device))
                self.lora_C_upper[name] = nn.Parameter(torch.zeros(config.r, config.r, dtype=w.dtype, device=w.device))

    def delete_adapter(self, name: str) -> None:
        super().delete_adapter(name)
        key = self._mask_key(name)
        if key in self._buffers:
            del self._buffers[key]
        for d in (self.lora_C_lower, self.lora_C_upper):
            if name in d:
                del d[name]

    def adopt(self, other: LoRALinear) -> None:
        super().adopt(other)
        if isinstance(other, TriAdaptLoRALinear):
            self.lora_C_lower, self.lora_C_upper = other.lora_C_lower, other.lora_C_upper
            for k, v in other._buffers.items():
                if k.startswith("rank_mask_"):
                    self.register_buffer(k, v)

    @staticmethod
    def _mask_key(name: str) -> str:
        return f"rank_mask_{name}"

    def rank_scale(self, name: str) -> torch.Tensor | None:
        return self._buffers.get(self._mask_key(name))

    def is_triangular(self, name: str) -> bool:
        """Whether adapter ``name`` uses the triangular core (``B C A``)."""
        return name in self.lora_C_lower

    def extra_adapter_parameters(self, name: str) -> list[nn.Parameter]:
        """The triangular core's ``L`` and ``U`` (trained with ``A`` and ``B``)."""
        return [self.lora_C_lower[name], self.lora_C_upper[name]] if self.is_triangular(name) else []

    def core(self, name: str) -> torch.Tensor:
        """The masked core ``C = (tril(L) + triu(U)) * m m^T`` (r x r, zero outside the active k x k block)."""
        m = self.rank_scale(name)
        c = torch.tril(self.lora_C_lower[name]) + torch.triu(self.lora_C_upper[name])
        return c * (m[:, None] * m[None, :])

    def lora_delta(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """``s * B C A dropout(x)`` (triangular mode), else LoRA with the rank mask."""
        if not self.is_triangular(name):
            return super().lora_delta(x, name)
        a = self.lora_A[name].weight
        h = F.linear(self.lora_dropout[name](x.to(a.dtype)), a)
        h = F.linear(h, self.core(name))
        return F.linear(h, self.lora_B[name].weight) * self.scaling(name)

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B_eff)`` with ``delta = s * B_eff A``: ``B_eff = B C`` (triangular) or ``B diag(m)``."""
        if not self.is_triangular(name):
            return super().factors(name)
        self._require(name)
        return self.lora_A[name].weight, self.lora_B[name].weight @ self.core(name)

    def _check_finite(self, name: str) -> None:
        super()._check_finite(name)
        for p in self.extra_adapter_parameters(name):
            if not torch.isfinite(p).all():
                raise AdapterError(
                    f"adapter {name!r} has NaN or inf in its triangular core; training diverged. "
                    "Delete the adapter (or reload a good copy) and lower the lr"
                )

    def active_rank(self, name: str) -> int:
        """Number of active components of adapter ``name``."""
        m = self.rank_scale(name)
        return self.lora_config[name].r if m is None else int(m.sum())

    def active_parameters(self, name: str, rank: int | None = None) -> int:
        """Trainable parameters in use at rank ``rank`` (default: the active rank).

        ``k (in + out)``, plus ``k (k + 1)`` for the triangular core (a ``k+1``-entry row of
        ``L`` and a ``k+1``-entry column of ``U`` per rank step, as counted by the paper's code).
        """
        k = self.active_rank(name) if rank is None else rank
        return k * (self.in_features + self.out_features) + (k * (k + 1) if self.is_triangular(name) else 0)

    def growth_cost(self, name: str) -> int:
        """Extra trainable parameters one more rank costs: ``in + out`` (+ ``2 (k + 1)`` triangular)."""
        k = self.active_rank(name)
        return self.active_parameters(name, k + 1) - self.active_parameters(name, k)

    def core_norm(self, name: str) -> float:
        """``||C - I_k||_F / k``: what the active core has learned, over its number of rank blocks (triangular mode).

        The paper's code starts the core at ``C = 0`` and scores ``||C||_F / k``; here the core starts
        at (and every grown block adds) the identity, so the learned part is ``C - I_k``. Scoring ``||C||``
        itself would count the identity, which falls as ``1 / sqrt(k)`` at every growth and would make
        each layer that just grew look unimportant.
        """
        if not self.is_triangular(name):
            raise ConfigError(f"adapter {name!r} has no triangular core; use triangular=True")
        c = self.core(name)
        if not torch.isfinite(c).all():
            raise ConfigError(f"adapter {name!r} holds NaN/inf in its triangular core; training diverged, lower the lr")
        return float((c - torch.diag(self.rank_scale(name))).norm()) / max(self.active_rank(name), 1)

    @torch.no_grad()
    def grow(self, name: str) -> bool:
        """Activate the next component of adapter ``name``; ``False`` when it is at capacity.

        Triangular mode: the new ``B`` column and ``U`` column are set to 0 and the new ``L``
        row to ``e_k`` (so the output is unchanged and the component can start learning).
        """
        m = self.rank_scale(name)
        if m is None:
            raise ConfigError(f"adapter {name!r} is not a TriAdaptLoRA adapter; it has no rank to grow")
        if name in self.merged_adapters:
            raise ConfigError(f"adapter {name!r} is merged; unmerge it before growing its rank")
        k = int(m.sum())
        if k >= m.numel():
            return False
        if self.is_triangular(name):
            self.lora_B[name].weight[:, k] = 0
            self.lora_C_lower[name][k, :] = 0
            self.lora_C_lower[name][k, k] = 1
            self.lora_C_upper[name][:, k] = 0
        m[k] = 1
        return True


def _tri_layers(model: nn.Module, name: str) -> dict[str, TriAdaptLoRALinear]:
    layers = {
        n: m
        for n, m in lora_layers(model).items()
        if isinstance(m, TriAdaptLoRALinear) and name in m.lora_config and m.rank_scale(name) is not None
    }
    if not layers:
        raise ConfigError(f"the model has no TriAdaptLoRA adapter named {name!r}; inject a TriAdaptLoRAConfig first")
    return layers


@torch.no_grad()
def layer_importance(model: nn.Module, name: str) -> dict[str, float]:
    """Mask-mode importance: ``||dW||_F / sqrt(active params)`` per layer, divided by the max (abstract reading)."""
    raw = {}
    for n, m in _tri_layers(model, name).items():
        d = m.delta_weight(name)
        if not torch.isfinite(d).all():
            raise ConfigError(f"layer {n!r}: adapter {name!r} holds NaN/inf; training diverged, lower the lr")
        raw[n] = float(d.norm()) / math.sqrt(m.active_parameters(name))
    top = max(raw.values())
    return {n: (v / top if top > 0 else 1.0) for n, v in raw.items()}


@torch.no_grad()
def core_norms(model: nn.Module, name: str) -> dict[str, float]:
    """``||C_l - I||_F / k_l`` per layer (the TriAdaptLoRA code's normalised Frobenius norm of the learned core)."""
    return {n: m.core_norm(name) for n, m in _tri_layers(model, name).items()}


def active_parameter_count(model: nn.Module, name: str) -> int:
    """Total active (trainable in use) parameters of TriAdaptLoRA adapter ``name``."""
    return sum(m.active_parameters(name) for m in _tri_layers(model, name).values())


def ranks(model: nn.Module, name: str) -> dict[str, int]:
    """Active rank of every layer holding TriAdaptLoRA adapter ``name``."""
    return {n: m.active_rank(name) for n, m in _tri_layers(model, name).items()}


def orthogonal_penalty(model: nn.Module, name: str) -> torch.Tensor:
    """Mean of ``||A_k A_k^T - I||_F`` and ``||B_k^T B_k - I||_F`` over layers (TriAdaptLoRA/AdaLoRA code's penalty).

    Uses the active rows of ``A`` and columns of ``B``; add ``weight * penalty`` to the loss
    (the code's default weight is 0.5). Differentiable; one small matrix product per layer.
    """
    terms = []
    for m in _tri_layers(model, name).values():
        k = m.active_rank(name)
        a, b = m.lora_A[name].weight[:k], m.lora_B[name].weight[:, :k]
        eye = torch.eye(k, dtype=a.dtype, device=a.device)
        terms += [torch.linalg.matrix_norm(a @ a.T - eye), torch.linalg.matrix_norm(b.T @ b - eye)]
    return torch.stack(terms).mean()


@torch.no_grad()
def restore_ranks(model: nn.Module, name: str) -> dict[str, int]:
    """Re-activate the grown ranks right after :func:`lifelong.adapters.load_adapter` (which restores ``init_rank``).

    A saved adapter has the mask (and, triangular, the core ``C``) folded into ``B``, exact
    for HF PEFT; components are activated in order, so the active rank is one past the last
    non-zero ``B`` column (at least the current rank). Triangular: the core is set to
    ``C = I`` (the loaded ``B`` already is ``B C``), so the function equals the saved one.
    Returns the ranks.
    """
    for m in _tri_layers(model, name).values():
        nz = torch.nonzero(m.lora_B[name].weight.abs().sum(0) > 0).flatten()
        k = max(m.active_rank(name), int(nz.max()) + 1 if nz.numel() else 0)
        m.rank_scale(name)[:k] = 1
        if m.is_triangular(name):
            m.lora_C_lower[name].copy_(torch.eye(m.lora_config[name].r))
            m.lora_C_upper[name].zero_()
    return ranks(model, name)


def _check_schedule(model: nn.Module, adapter_name: str, budget: int, t_init: int, t_final: int, delta_t: int) -> None:
    if isinstance(budget, bool) or not (isinstance(budget, int) and budget > 0):
        raise ConfigError(f"budget must be a positive parameter count, got {budget!r}")
    if not (0 <= t_init < t_final) or delta_t < 1:
        raise ConfigError(
            f"need 0 <= t_init < t_final and delta_t >= 1, got t_init={t_init}, t_final={t_final}, delta_t={delta_t}"
        )
    start = active_parameter_count(model, adapter_name)
    if start > budget:
        raise ConfigError(
            f"the initial ranks already use {start} parameters, more than the budget {budget}; "
            "lower init_rank or raise the budget"
        )


def _grow_in_order(layers: dict, score: dict[str, float], tau: float, used: int, budget: int, name: str) -> list[str]:
    """Grow every layer scoring ``>= tau`` by one rank, most important first, while the active
    adapter parameters (``used`` plus each growth's cost) stay within ``budget``; returns the grown layers."""
    grown = []
    for n in sorted(score, key=lambda k: -score[k]):
        m = layers[n]
        cost = m.growth_cost(name)
        if score[n] >= tau and used + cost <= budget and m.grow(name):
            used += cost
            grown.append(n)
    return grown


class RankGrowthController:
    """Mask-mode growth (abstract-level reading): importance by :func:`layer_importance`, threshold falling 1 -> 0.

    Call :meth:`step` after every optimizer step with the 0-based step count. ``budget``
    is the maximum total active adapter parameters (e.g. those of fixed-rank LoRA).
    Works for triangular adapters too (it then counts the core's parameters).
    """

    def __init__(self, model: nn.Module, adapter_name: str, budget: int, t_init: int, t_final: int, delta_t: int = 10):
        self.model, self.name = model, adapter_name
        _check_schedule(model, adapter_name, budget, t_init, t_final, delta_t)
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
        return _grow_in_order(layers, imp, self.threshold(t), used, self.budget, self.name)


class TriangularGrowthController:
    """TriAdaptLoRA rank growth as in the paper's code: top-``n`` layers by core-norm increase, ``n`` rising in time.

    Importance of layer ``l`` at a check: ``||C_l - I||_F / k_l`` now minus its value at the
    previous check (the first reference is taken at construction). At steps
    ``t_init < t <= t_final`` with ``(t - t_init) % delta_t == 0`` and while the total rank is
    below ``target_total_rank``: ``n`` = :meth:`n_grow`, the threshold is the ``n``-th largest
    importance, and every layer at or above it grows by one rank, most important first, while
    the active parameters stay <= ``budget`` (added here; the code budgets ranks only).
    ``schedule``: ``"linear"`` (the paper's best) or ``"exp"`` (the code's "non-linear").
    ``target_total_rank`` defaults to the ranks ``budget`` buys at ``in + out`` each (LoRA's cost).
    Requires triangular adapters.
    """

    SCHEDULES = ("linear", "exp")

    def __init__(
        self,
        model: nn.Module,
        adapter_name: str,
        budget: int,
        t_init: int,
        t_final: int,
        delta_t: int = 10,
        target_total_rank: int | None = None,
        schedule: str = "linear",
    ):
        self.model, self.name = model, adapter_name
        _check_schedule(model, adapter_name, budget, t_init, t_final, delta_t)
        layers = _tri_layers(model, adapter_name)
        flat = [n for n, m in layers.items() if not m.is_triangular(adapter_name)]
        if flat:
            raise ConfigError(
                f"layers {flat[:3]} hold mask-mode (triangular=False) adapters; use RankGrowthController "
                "or inject TriAdaptLoRAConfig(triangular=True)"
            )
        if schedule not in self.SCHEDULES:
            raise ConfigError(f"unknown growth schedule {schedule!r}; choose one of {self.SCHEDULES}")
        if target_total_rank is None:
            target_total_rank = budget // max(
                1, round(sum(m.in_features + m.out_features for m in layers.values()) / len(layers))
            )
        if isinstance(target_total_rank, bool) or not isinstance(target_total_rank, int) or target_total_rank < 1:
            raise ConfigError(f"target_total_rank must be a positive integer, got {target_total_rank!r}")
        self.budget, self.t_init, self.t_final, self.delta_t = budget, t_init, t_final, delta_t
        self.target_total_rank, self.schedule = target_total_rank, schedule
        self.previous = core_norms(model, adapter_name)

    def n_grow(self, t: int, total_rank: int) -> int:
        """Layers to grow at step ``t``: ``int(remaining * progress)`` (linear) or ``int(remaining ** progress)``."""
        p = (t - self.t_init) / (self.t_final - self.t_init)
        remaining = max(self.target_total_rank - total_rank, 1)
        n = int(remaining * p) if self.schedule == "linear" else int(math.exp(p * math.log(remaining)))
        return min(max(n, 1), len(self.previous))

    def importance(self) -> dict[str, float]:
        """Increase of ``||C - I||_F / k`` per layer since the previous call (updates the reference)."""
        now = core_norms(self.model, self.name)
        score = {n: now[n] - self.previous.get(n, 0.0) for n in now}
        self.previous = now
        return score

    def step(self, t: int) -> list[str]:
        """At a growth step, grow every layer whose importance reaches the top-``n`` threshold and fits the budget."""
        if t <= self.t_init or t > self.t_final or (t - self.t_init) % self.delta_t:
            return []
        layers = _tri_layers(self.model, self.name)
        total = sum(m.active_rank(self.name) for m in layers.values())
        if total >= self.target_total_rank:
            return []
        score = self.importance()
        n = self.n_grow(t, total)
        tau = sorted(score.values(), reverse=True)[n - 1]
        used = active_parameter_count(self.model, self.name)
        return _grow_in_order(layers, score, tau, used, self.budget, self.name)


__all__ = [
    "TriAdaptLoRAConfig",
    "TriAdaptLoRALinear",
    "RankGrowthController",
    "TriangularGrowthController",
    "layer_importance",
    "core_norms",
    "orthogonal_penalty",
    "restore_ranks",
    "active_parameter_count",
    "ranks",
]
