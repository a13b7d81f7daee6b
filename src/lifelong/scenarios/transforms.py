"""Deterministic input transforms that define domain-incremental experiences."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Permutation:
    """A fixed random permutation of input features (permuted MNIST; Goodfellow et al. 2013)."""

    def __init__(self, num_features: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(num_features, generator=g)
        self.spec = {"kind": "permutation", "seed": seed}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with its flattened features permuted."""
        flat = x.reshape(x.shape[0], -1)
        return flat[:, self.perm].reshape(x.shape)


class Rotation:
    """Rotates images ``(n, C, H, W)`` by a fixed angle in degrees (rotated MNIST)."""

    def __init__(self, degrees: float):
        self.degrees = float(degrees)
        self.spec = {"kind": "rotation", "degrees": self.degrees}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` rotated by :attr:`degrees`."""
        if x.dim() != 4:
            raise ValueError("rotation needs image inputs of shape (n, C, H, W)")
        a = math.radians(self.degrees)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype).expand(
            x.shape[0], 2, 3
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
