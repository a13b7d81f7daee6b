"""ALLoRA: LoRA without dropout and scaling, with a per-row adaptive learning rate.

ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws (arXiv 2410.09692). The update is ``W + B A``,
and the gradient flowing into ``A`` and ``B`` for output row ``i`` is scaled by
``c_i = 1 / sqrt(||dW_i||^p + 1/eta^2)`` (:class:`ALLoRAFunction`); the coefficient's form and ``eta = 1``
are our reading of the abstract. Saved adapters are plain LoRA for HF PEFT (``lora_alpha = r``), with
``eta`` and ``p`` in the file's metadata.

Notes: docs/papers/allora.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from lifelong.adapters.lora import LoRAConfig, LoRALinear, register_adapter_kind
from lifelong.errors import ConfigError


def allora_row_scale(row_norms: torch.Tensor, eta: float, power: float = 2.0) -> torch.Tensor:
    """ALLoRA's coefficient ``1 / sqrt(||dW_i||^p + 1/eta^2)`` per row norm (Huang & Balestriero 2024)."""
    return torch.rsqrt(row_norms.pow(power) + 1.0 / (eta * eta))


def delta_row_norms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row norms of ``B A`` (out,) from the factors, via ``b_i^T (A A^T) b_i`` (no out x in matrix)."""
    a, b = a.detach().float(), b.detach().float()
    sq = ((b @ (a @ a.T)) * b).sum(1)
    return sq.clamp_min(0).sqrt()


class ALLoRAFunction(torch.autograd.Function):
    """``y = x A^T B^T`` whose backward scales row ``i`` of the output gradient by ``c_i`` for A and B only.

    ``grad_x = g B A`` (unscaled, for earlier layers); with ``g~ = g * c``:
    ``grad_B = g~^T (x A^T)`` and ``grad_A = (g~ B)^T x``.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        h = x @ a.T
        ctx.save_for_backward(x, a, b, h, scale)
        return h @ b.T

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, g: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        x, a, b, h, scale = ctx.saved_tensors
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ b) @ a
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gs = (g * scale.to(g.dtype)).reshape(-1, g.shape[-1])
            if ctx.needs_input_grad[2]:
                grad_b = gs.T @ h.reshape(-1, h.shape[-1])
            if ctx.needs_input_grad[1]:
                grad_a = (gs @ b).T @ x.reshape(-1, x.shape[-1])
        return grad_x, grad_a, grad_b, None


@register_adapter_kind
@dataclass
class ALLoRAConfig(LoRAConfig):
    """ALLoRA adapter settings: rank, targets, ``eta`` and the norm power ``p`` (no alpha, no dropout).

    ``alpha`` is fixed to ``r`` (scaling 1) and ``dropout`` to 0; giving other values
    raises :class:`ConfigError`. The default init is LoRA's (A Kaiming, B = 0).
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
    """:class:`LoRALinear` that runs ALLoRA adapters with the per-row gradient coefficient.

    Plain LoRA adapters in the same layer keep the standard rule.
    """

    def row_scale(self, name: str) -> torch.Tensor:
        """The current coefficient ``c_i`` of each output row for ALLoRA adapter ``name``."""
        cfg = self.lora_config[name]
        a, b = self.factors(name)
        return allora_row_scale(delta_row_norms(a, b), cfg.eta, cfg.norm_power)

    def lora_delta(self, x: torch.Tensor, name: str) -> torch.Tensor:
        cfg = self.lora_config[name]
        if not isinstance(cfg, ALLoRAConfig):
            return super().lora_delta(x, name)
        a, b = self.factors(name)
        x = x.to(a.dtype)
        if not torch.is_grad_enabled() or not (a.requires_grad or b.requires_grad):
            return (x @ a.T) @ b.T
        with torch.no_grad():
            scale = self.row_scale(name).to(a.dtype)
        return ALLoRAFunction.apply(x, a, b, scale)


__all__ = ["ALLoRAConfig", "ALLoRALinear", "ALLoRAFunction", "allora_row_scale", "delta_row_norms"]
