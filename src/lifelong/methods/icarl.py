"""iCaRL (Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR 2017, arXiv 1611.07725).

Each experience trains on its data plus the exemplar memory with sigmoid binary cross-entropy: one-hot targets for
the new classes, the previous model's sigmoid outputs as targets for the old classes (distillation). After it, the
memory keeps ``K // classes seen`` herded exemplars per class (:class:`lifelong.memory.herding.HerdingMemory`) and
prediction is the nearest mean of exemplars (NME) on L2-normalised features; ``classifier=linear`` predicts with
the trained head instead (the paper's "hybrid1" ablation). Defaults: the paper's weight decay 1e-5; memory 200
(the paper's 2000 on CIFAR-100, scaled to the 5,000-image MNIST subset); the BCE is summed over classes and
averaged over examples (the official code averages over classes too, hence its lr 2.0) so one lr grid fits it
and the cross-entropy methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.encoders.frozen import frozen_copy
from lifelong.errors import ConfigError
from lifelong.memory.herding import HerdingMemory, exemplar_means
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class ICaRLConfig(GradientConfig):
    """iCaRL settings (weight decay 1e-5 as in the paper; memory scaled to MNIST)."""

    buffer_size: int = hp(200, "exemplar memory K in examples, shared equally by the classes seen")
    classifier: str = hp("nme", "predict with nme (nearest mean of exemplars) | linear (the trained head: ablation)")
    weight_decay: float = hp(1e-5, "L2 weight decay (the paper's 1e-5)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if self.classifier not in ("nme", "linear"):
            raise ConfigError(f"classifier must be 'nme' or 'linear', got {self.classifier!r}")


@register("icarl")
class ICaRL(GradientLearner):
    """iCaRL: herded exemplars, sigmoid distillation, nearest-mean-of-exemplars prediction."""

    config_class = ICaRLConfig

    def __init__(self, config: ICaRLConfig, seed: int = 0):
        super().__init__(config, seed)
        self.memory = HerdingMemory(config.buffer_size)
        self.teacher: torch.nn.Module | None = None
        self.old_classes: torch.Tensor | None = None
        self.means: torch.Tensor | None = None  # (num_classes, d) float64, normalised
        self.has_mean: torch.Tensor | None = None

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Train on the experience's data together with the exemplars (one shuffled set)."""
        if len(self.memory):
            mx, my = self.memory.tensors()
            x, y = torch.cat([x, mx]), torch.cat([y, my])
        super().fit(x, y, experience)

    def before_experience(self, experience: Experience) -> None:
        self.teacher = None
        if self.old_classes is not None and self.old_classes.any():
            self.teacher = frozen_copy(self.model)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        out = self.model(x)
        seen = self.classes.seen
        targets = F.one_hot(y, self.num_classes).to(out.dtype)
        if self.teacher is not None:
            with torch.no_grad():
                targets[:, self.old_classes] = torch.sigmoid(self.teacher(x)[:, self.old_classes])
        bce = F.binary_cross_entropy_with_logits(out[:, seen], targets[:, seen], reduction="sum")
        return bce / len(y)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    def after_experience(self, experience: Experience) -> None:
        self.old_classes = self.classes.seen.clone()
        self.teacher = None  # rebuilt from the model at the next experience
        x, y = experience.train_tensors()
        was = self.model.training
        self.model.eval()
        n_seen = int(self.classes.seen.sum())
        self.memory.update(x, y, self._features, n_seen)
        with torch.no_grad():
            mx, my = self.memory.tensors()
            self.means, self.has_mean = exemplar_means(self._features(mx), my, self.num_classes)
        self.model.train(was)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """NME scores ``-||phi(x)/|phi(x)| - mu_c||^2`` (or the linear head's logits with ``classifier=linear``)."""
        if self.config.classifier == "linear" or self.means is None:
            return super().predict(x, task_id)
        was = self.model.training
        self.model.eval()
        f = F.normalize(self._features(x).to(torch.float64), dim=1)
        self.model.train(was)
        scores = -torch.cdist(f, self.means).square()
        scores = scores.masked_fill(~self.has_mean, float("-inf")).to(torch.float32)
        return self.classes.mask(scores, task_id)

    def extra_state(self) -> dict:
        state: dict = {"memory": self.memory.state_dict()}
        if self.old_classes is not None:
            state["old_classes"] = self.old_classes.clone()
        if self.means is not None:
            state["means"], state["has_mean"] = self.means.clone(), self.has_mean.clone()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        if "old_classes" in state:
            self.old_classes = state["old_classes"].to(torch.bool)
        if "means" in state:
            self.means, self.has_mean = state["means"].to(torch.float64), state["has_mean"].to(torch.bool)
