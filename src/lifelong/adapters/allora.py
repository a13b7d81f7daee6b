"""ALLoRA: LoRA without dropout and scaling, with a per-row adaptive learning rate (seed paper 37).

Huang & Balestriero, *ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws*,
arXiv:2410.09692 (2024). The paper argues that for short fine-tuning runs LoRA's
dropout is no reliable regulariser, its ``B = 0`` start makes ``B`` slow to leave zero,
and the ``alpha / r`` factor couples layers "short-sightedly". ALLoRA drops dropout
and the scaling factor (the update is plainly ``W + B A``) and instead scales "the per
sample and per parameter gradients with a coefficient inversely proportional to
parameters' l2 norm" (abstract).

What is implemented (the coefficient's exact form could not be read from the paper
itself here; see docs/papers.md):

- the update of output row ``i`` of ``dW = B A`` gets the coefficient
  ``c_i = 1 / sqrt(||dW_i||^p + 1/eta^2)``: ``eta`` at ``dW = 0`` (a fast start from
  zero) and ``~ ||dW_i||^(-p/2)`` once the row has grown. ``p = 2`` (default) is the
  abstract's literal "inversely proportional to the norm"; ``p = 1`` is the form used
  by public re-implementations (``sqrt(||dW_i|| + 1/eta^2)``);
- the coefficient multiplies the output gradient of row ``i`` *only where it flows
  into A and B* (a custom autograd rule, :class:`ALLoRAFunction`); the gradient passed
  on to earlier layers is the plain one. Since the coefficient depends only on the
  parameters, scaling each sample's gradient equals scaling the batch gradient;
- ``||dW_i||`` is computed from the factors without forming ``dW``:
  ``||dW_i||^2 = b_i^T (A A^T) b_i`` (``O((in + out) r^2)``).

``eta`` has no value from the paper here; the default 1 leaves the optimizer's
learning rate unchanged at ``dW = 0`` (a guess, documented in docs/papers.md). Note
that Adam-type optimizers largely cancel any slowly varying per-row gradient scale;
the effect is strongest with SGD.

Saved adapters are plain LoRA for HF PEFT (``lora_alpha = r``: scaling 1, dropout 0),
so PEFT reproduces an ALLoRA model's outputs exactly; ``eta`` and ``p`` travel in the
file's metadata for lifelong.
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
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        h = x @ a.T
        ctx.save_for_backward(x, a, b, h, scale)
        return h @ b.T

    @staticmethod
    def backward(ctx, g: torch.Tensor):
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
