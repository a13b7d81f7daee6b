"""Learning without Forgetting (LwF; Li & Hoiem, ECCV 2016 / TPAMI 2017).

Before each new experience the current model is frozen as a teacher. Training
minimises cross-entropy over the classes seen so far plus ``alpha`` times the
knowledge-distillation loss (temperature ``T``, scaled by T^2) between the
student's and the teacher's softened outputs on the old classes, computed on the
new data only. No examples are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.encoders.frozen import frozen_copy
from lifelong.errors import ConfigError
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class LwFConfig(GradientConfig):
    """LwF settings (alpha = 1 and T = 2 as in the paper)."""

    alpha: float = hp(1.0, "weight of the distillation loss")
    temperature: float = hp(2.0, "distillation temperature T")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.alpha < 0:
            raise ConfigError(f"alpha (the distillation weight) must be >= 0, got {self.alpha}")


@register("lwf")
class LwF(GradientLearner):
    """Learning without Forgetting for class-incremental streams."""

    config_class = LwFConfig

    def __init__(self, config: LwFConfig, seed: int = 0):
        super().__init__(config, seed)
        self.teacher = None
        self.old_classes: torch.Tensor | None = None

    def before_experience(self, experience: Experience) -> None:
        if experience.index > 0 and self.old_classes is not None and self.old_classes.any():
            self.teacher = frozen_copy(self.model)

    def after_experience(self, experience: Experience) -> None:
        self.old_classes = self.classes.seen.clone()

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        out = self.model(x)
        ce = F.cross_entropy(out.masked_fill(~self.classes.seen, float("-inf")), y)
        if self.teacher is None:
            return ce
        with torch.no_grad():
            t_out = self.teacher(x)[:, self.old_classes]
        T = self.config.temperature
        kd = (
            F.kl_div(
                F.log_softmax(out[:, self.old_classes] / T, dim=1), F.softmax(t_out / T, dim=1), reduction="batchmean"
            )
            * T
            * T
        )
        return ce + self.config.alpha * kd

    def extra_state(self) -> dict:
        state = {"has_teacher": self.teacher is not None}
        if self.old_classes is not None:
            state["old_classes"] = self.old_classes.clone()
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        if "old_classes" in state:
            self.old_classes = state["old_classes"].to(torch.bool)
        if state["has_teacher"]:
            self.teacher = frozen_copy(self.model)
            self.teacher.load_state_dict(state["teacher"])
