"""Backbone + linear head, the model every gradient method trains by default."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``head(backbone(x))`` with a linear head over all of the stream's classes.

    Class-incremental learners mask the logits of classes not seen yet, which is
    equivalent to a head that grows with each experience.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
