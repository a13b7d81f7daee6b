"""Joint training: at each experience, train on the union of all experiences so far.

The usual upper bound. It keeps every training example it has seen (as tensors, so
that a checkpoint holds everything needed to continue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class JointConfig(GradientConfig):
    """Joint training settings."""

    reinit: bool = hp(False, "re-initialise the model before each experience (train from scratch on the union)")


@register("joint")
class Joint(GradientLearner):
    """Cumulative joint training on every experience seen so far."""

    config_class = JointConfig

    def __init__(self, config: JointConfig, seed: int = 0):
        super().__init__(config, seed)
        self.past_x: torch.Tensor | None = None
        self.past_y: torch.Tensor | None = None

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        if self.past_x is not None:
            x, y = torch.cat([self.past_x, x]), torch.cat([self.past_y, y])
        self.past_x, self.past_y = x, y
        if self.config.reinit and experience.index > 0:
            seen = self.classes.seen.clone()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + experience.index)
                self.model = self.build_model(self.input_shape, self.num_classes)
            self.optimizer = self.make_optimizer()
            self.classes.seen = seen
        super().fit(x, y, experience)

    def extra_state(self) -> dict:
        if self.past_x is None:
            return {}
        return {"past_x": self.past_x, "past_y": self.past_y}

    def load_extra_state(self, state: dict) -> None:
        self.past_x, self.past_y = state.get("past_x"), state.get("past_y")
