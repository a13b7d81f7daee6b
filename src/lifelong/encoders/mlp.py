"""A multilayer perceptron backbone over flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] per hidden size. ``out_dim`` is the last hidden size."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (256, 256)):
        super().__init__()
        dims = [int(math.prod(input_shape)), *[int(h) for h in hidden]]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
