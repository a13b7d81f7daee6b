"""ALLoRA: LoRA without dropout and scaling, with a per-row adaptive learning rate.

ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws (arXiv 2410.09692). The update is ``W + B A``
(no ``alpha / r``, no dropout). Each row ``theta_i`` of ``A`` and of ``B`` gets its own learning rate:
the optimizer's update of that row is multiplied by ``c_i = 1 / sqrt(||theta_i||^p + 1/eta^2)``
(:func:`allora_row_scale`), so ``B`` leaves zero at ``eta`` times the base rate and large rows slow
down. The coefficient acts on the *update* (after the optimizer), where Adam's normalisation cannot
cancel it: :func:`attach_allora` hooks it onto any ``torch.optim`` optimizer. The coefficient's form
and the row granularity are our reading of the abstract. Saved adapters are plain LoRA for HF PEFT
(``lora_alpha = r``), with ``eta`` and ``p`` in the file's metadata.

Notes: docs/papers/allora.md
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lifelong.adapters.lora import LoRAConfig, LoRALinear, lora_layers, register_adapter_kind
from lifelong.errors import ConfigError


def allora_row_scale(row_norms: torch.Tensor, eta: float, power: float = 2.0) -> torch.Tensor:
    """ALLoRA's coefficient ``1 / sqrt(||theta_i||^p + 1/eta^2)`` per row norm (Huang & Balestriero 2024)."""
    return torch.rsqrt(row_norms.pow(power) + 1.0 / (eta * eta))


def delta_row_norms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row norms of ``B A`` (out,) from the factors, via ``b_i^T (A A^T) b_i`` (no out x in matrix)."""
    a, b = a.detach().float(), b.detach().float()
    sq = ((b @ (a @ a.T)) * b).sum(1)
    return sq.clamp_min(0).sqrt()


def row_learning_rates(weight: torch.Tensor, eta: float, power: float = 2.0) -> torch.Tensor:
    """The per-row learning-rate multipliers ``c_i`` of a factor matrix (one per row), shape ``(rows, 1)``."""
    return allora_row_scale(weight.detach().float().norm(dim=1), eta, power).unsqueeze(1)


@register_adapter_kind
@dataclass
class ALLoRAConfig(LoRAConfig):
    """ALLoRA adapter settings: rank, targets, ``eta`` and the norm power ``p`` (no alpha, no dropout).

    ``alpha`` is fixed to ``r`` (scaling 1) and ``dropout`` to 0; giving other values
    raises :class:`ConfigError`. The default init is LoRA's (A Kaiming, B = 0). The per-row
    learning rate needs the optimizer: see :func:`attach_allora`.
    """

    alpha: float | None = None
    eta: float = 1.0
    norm_power: float = 2.0

    kind: ClassVar[str] = "allora"

    def __post_init__(self) -> None:
        if self.alpha is not None and float(self.alpha) != float(self.r):
            raise ConfigError(f"ALLoRA has no scaling factor (alpha = r); leave alpha unset, got alpha={self.alpha}")
        if self.dropout:
            raise ConfigError(f"ALLoRA is dropout-free; leave dropout at 0, got {self.dropout}")
        if self.use_rslora:
            raise ConfigError("ALLoRA has no scaling factor, so use_rslora does not apply; leave it False")
        if isinstance(self.r, int) and not isinstance(self.r, bool):
            self.alpha = float(self.r)
        super().__post_init__()
        if not (math.isfinite(self.eta) and self.eta > 0):
            raise ConfigError(f"ALLoRA eta must be a positive number, got {self.eta}")
        if not (math.isfinite(self.norm_power) and self.norm_power > 0):
            raise ConfigError(f"ALLoRA norm_power must be > 0, got {self.norm_power}")

    @property
    def scaling(self) -> float:
        """1: ALLoRA has no ``alpha / r`` factor."""
        return 1.0

    @property
    def layer_class(self) -> type[LoRALinear]:
        return ALLoRALinear


class ALLoRALinear(LoRALinear):
    """:class:`LoRALinear` for ALLoRA adapters: the forward and backward are plain LoRA (scaling 1, no dropout).

    The per-row learning rate is applied to the optimizer's update by :func:`attach_allora`;
    training an ALLoRA adapter whose factors no attached optimizer updates warns once.
    """

    def __init__(self, base_layer: nn.Linear):
        super().__init__(base_layer)
        self.allora_attached: set[str] = set()
        self._warned: set[str] = set()

    def row_scale(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The current per-row learning-rate multipliers ``(c_A (r, 1), c_B (out, 1))`` of ALLoRA adapter ``name``."""
        cfg = self.lora_config[name]
        if not isinstance(cfg, ALLoRAConfig):
            raise ConfigError(f"adapter {name!r} is not an ALLoRA adapter")
        a, b = self.lora_A[name].weight, self.lora_B[name].weight
        return row_learning_rates(a, cfg.eta, cfg.norm_power), row_learning_rates(b, cfg.eta, cfg.norm_power)

    def lora_delta(self, x: torch.Tensor, name: str) -> torch.Tensor:
        cfg = self.lora_config[name]
        if (
            isinstance(cfg, ALLoRAConfig)
            and self.training
            and torch.is_grad_enabled()
            and name not in self.allora_attached
            and name not in self._warned
            and self.lora_B[name].weight.requires_grad
        ):
            self._warned.add(name)
            warnings.warn(
                f"ALLoRA adapter {name!r} is trained without its per-row learning rate (plain LoRA with alpha = r): "
                "call lifelong.adapters.allora.attach_allora(optimizer, model) after building the optimizer",
                stacklevel=3,
            )
        return super().lora_delta(x, name)


class ALLoRAStep:
    """Hooks on one optimizer that rescale each ALLoRA factor row's update by ``c_i`` (a per-row learning rate).

    Before ``optimizer.step()`` the factors and their coefficients (from the current rows) are
    recorded; after it, ``theta <- theta_old + c * (theta_new - theta_old)``. Works with any
    ``torch.optim`` optimizer (SGD, Adam, AdamW, ...): the whole update of the row, decoupled
    weight decay included, is scaled. :meth:`remove` detaches the hooks.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, targets: list[tuple[torch.Tensor, float, float]]):
        self.optimizer = optimizer
        self.targets = targets
        self._saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]

    @torch.no_grad()
    def _pre(self, *_args) -> None:
        self._saved = [
            (p, p.detach().clone(), row_learning_rates(p, eta, power).to(p.dtype))
            for p, eta, power in self.targets
            if p.requires_grad
        ]

    @torch.no_grad()
    def _post(self, *_args) -> None:
        for p, old, c in self._saved:
            p.copy_(old + c * (p - old))
        self._saved = []

    def remove(self) -> None:
        """Detach the hooks (the optimizer then updates the factors like plain LoRA)."""
        for h in self._handles:
            h.remove()
        self._handles = []


def attach_allora(optimizer: torch.optim.Optimizer, model: nn.Module) -> ALLoRAStep:
    """Give every ALLoRA adapter of ``model`` whose factors ``optimizer`` updates its per-row learning rate.

    Rows are those of ``lora_A`` (``r x in``) and ``lora_B`` (``out x r``); ``c_i`` uses the
    adapter's ``eta`` and ``norm_power``. Returns the :class:`ALLoRAStep` holding the hooks.

    Raises:
        ConfigError: the optimizer updates no ALLoRA factor of ``model``.
    """
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    targets: list[tuple[torch.Tensor, float, float]] = []
    for layer in lora_layers(model).values():
        if not isinstance(layer, ALLoRALinear):
            continue
        for name, cfg in layer.lora_config.items():
            if not isinstance(cfg, ALLoRAConfig):
                continue
            params = [layer.lora_A[name].weight, layer.lora_B[name].weight]
            if any(id(p) in owned for p in params):
                layer.allora_attached.add(name)
                targets += [(p, cfg.eta, cfg.norm_power) for p in params if id(p) in owned]
    if not targets:
        raise ConfigError("attach_allora: the optimizer updates no ALLoRA adapter factor of this model")
    return ALLoRAStep(optimizer, targets)


__all__ = [
    "ALLoRAConfig",
    "ALLoRALinear",
    "ALLoRAStep",
    "allora_row_scale",
    "attach_allora",
    "delta_row_norms",
    "row_learning_rates",
]
