"""Cosine classifier: scaled cosine similarity between embeddings and class weights."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """``sigma * cos(x, w_c)`` with a learnable scale ``sigma`` (init 1), the official ``CosineLinear``."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        stdv = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-stdv, stdv))
        self.sigma = nn.Parameter(torch.ones(1))

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled cosine similarities ``cos(x, w_c)`` (LUCIR's margin ranking loss reads these)."""
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigma * F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T
