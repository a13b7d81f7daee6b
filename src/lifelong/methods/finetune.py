"""Naive fine-tuning: train on each experience in turn, nothing against forgetting.

The lower bound of every continual-learning comparison. ``loss_scope="current"`` restricts the
training cross-entropy to the current experience's classes (a multi-head loss, the loss of
task-incremental methods such as per-task sparse sub-networks), so a baseline can share its
method's loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience

LOSS_SCOPES = ("seen", "current")


@dataclass
class FinetuneConfig(GradientConfig):
    """The shared gradient settings and the classes the training loss covers."""

    loss_scope: str = hp(
        "seen",
        "classes in the training cross-entropy: seen (all classes seen so far) | current (only "
        "the current experience's classes, other logits set to -inf: a multi-head loss)",
    )

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for an unknown ``loss_scope``."""
        super().validate()
        if self.loss_scope not in LOSS_SCOPES:
            raise ConfigError(f"loss_scope must be one of {LOSS_SCOPES}, got {self.loss_scope!r}")


@register("finetune")
class Finetune(GradientLearner):
    """Sequential fine-tuning with cross-entropy over the classes seen so far (or the current experience's)."""

    config_class = FinetuneConfig

    def __init__(self, config: FinetuneConfig, seed: int = 0):
        super().__init__(config, seed)
        self._current: torch.Tensor | None = None

    def before_experience(self, experience: Experience) -> None:
        """Record the current experience's classes (used by ``loss_scope="current"``)."""
        current = torch.zeros(self.num_classes, dtype=torch.bool)
        current[list(experience.classes)] = True
        self._current = current

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        """Cross-entropy over the seen classes, or over the current experience's (``loss_scope="current"``)."""
        if self.config.loss_scope == "seen":
            return super().loss(x, y, experience)
        allowed = self.classes.seen & self._current
        return F.cross_entropy(self.model(x).masked_fill(~allowed, float("-inf")), y)
