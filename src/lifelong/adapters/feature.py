"""Adapters over an embedding vector: AdaptFormer's bottleneck, SSF scale-shift, an identity-initialised linear.

Each starts at (or near) the identity, so training starts from the pre-trained embedding.
``feature_adapter(kind, dim)`` builds one by name; ``rms_normalize`` rescales embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError


def rms_normalize(f: torch.Tensor) -> torch.Tensor:
    """Scale each row to norm ``sqrt(d)`` (unit root-mean-square per feature, like a LayerNorm'ed output)."""
    return F.normalize(f, dim=1) * math.sqrt(f.shape[1])


class BottleneckAdapter(nn.Module):
    """Residual bottleneck ``x + scale * up(relu(down(x)))`` (AdaptFormer, Chen et al. 2022).

    Initialised as in AdaptFormer's "lora" option: ``down`` Kaiming-uniform, ``up``
    and both biases zero, so the module starts as the identity.
    """

    def __init__(self, dim: int, bottleneck: int = 64, scale: float = 0.1):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = float(scale)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.up(F.relu(self.down(x)))


class ScaleShift(nn.Module):
    """SSF (Lian et al. 2022): ``gamma * x + beta`` per feature, gamma ~ N(1, 0.02), beta ~ N(0, 0.02)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(dim).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.empty(dim).normal_(0.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


class IdentityLinear(nn.Linear):
    """A full ``d x d`` linear layer initialised to the identity with zero bias."""

    def __init__(self, dim: int):
        super().__init__(dim, dim)
        with torch.no_grad():
            self.weight.copy_(torch.eye(dim))
            self.bias.zero_()


def feature_adapter(kind: str, dim: int, bottleneck: int = 64, scale: float = 0.1) -> nn.Module:
    """A trainable module over ``dim``-d embeddings that starts at (or near) the identity.

    ``kind``: ``adapter`` (:class:`BottleneckAdapter`), ``ssf`` (:class:`ScaleShift`),
    ``finetune`` or ``linear`` (:class:`IdentityLinear`).
    """
    if kind == "adapter":
        return BottleneckAdapter(dim, bottleneck, scale)
    if kind == "ssf":
        return ScaleShift(dim)
    if kind in ("finetune", "linear"):
        return IdentityLinear(dim)
    raise ConfigError(f"unknown adapter kind {kind!r}; choose one of adapter, ssf, finetune")
