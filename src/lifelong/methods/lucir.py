"""LUCIR (Hou et al., "Learning a Unified Classifier Incrementally via Rebalancing", CVPR 2019).

A cosine-normalised head ``sigma * cos(f, w_c)`` (:class:`lifelong.heads.cosine.CosineClassifier`, learnable sigma)
over a backbone without its last ReLU, trained on the new data plus herded exemplars with cross-entropy plus, after
the first experience, the less-forget constraint ``lambda * (1 - cos(f, f_old))`` (``lambda = lambda_base *
sqrt(old classes / new classes)``, lambda_base = 5) and the inter-class margin ranking loss on old-class samples
(ground-truth cosine against the top-K = 2 new-class cosines, margin 0.5, weight 1). New classes' weights are
imprinted from their normalised feature means and old classes' weights stay fixed, as in the official code; weight
decay 5e-4 (the paper's CIFAR setting). Not included: class-balanced finetuning (the paper's optional CBF step).
Adapted: a fixed memory of 200 exemplars shared by the classes seen (the paper keeps 20 per class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.encoders import MLP
from lifelong.encoders.frozen import frozen_copy
from lifelong.errors import ConfigError
from lifelong.heads import Classifier
from lifelong.heads.cosine import CosineClassifier
from lifelong.memory.herding import HerdingMemory
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class LUCIRConfig(GradientConfig):
    """LUCIR settings (the paper's lambda_base 5, K 2, margin 0.5, weight decay 5e-4)."""

    buffer_size: int = hp(200, "exemplar memory in examples, shared equally by the classes seen (herding)")
    lambda_base: float = hp(5.0, "less-forget weight base: lambda = lambda_base * sqrt(old / new classes)")
    margin: float = hp(0.5, "margin m of the inter-class margin ranking loss")
    k_hard: int = hp(2, "hard negatives K (top new-class cosines) per old-class sample")
    mr_weight: float = hp(1.0, "weight of the margin ranking loss")
    imprint: bool = hp(True, "initialise new classes' weights from their normalised feature means")
    last_relu: bool = hp(False, "keep the backbone's last ReLU (the paper removes it)")
    weight_decay: float = hp(5e-4, "L2 weight decay (the paper's 5e-4)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if self.lambda_base < 0 or self.mr_weight < 0 or self.margin < 0:
            raise ConfigError(
                f"lambda_base, mr_weight and margin must be >= 0, got {self.lambda_base}, {self.mr_weight}, "
                f"{self.margin}"
            )
        if self.k_hard < 1:
            raise ConfigError(f"k_hard must be >= 1, got {self.k_hard}")


@register("lucir")
class LUCIR(GradientLearner):
    """LUCIR: cosine head, feature distillation, margin ranking on exemplars, fixed old-class weights."""

    config_class = LUCIRConfig

    def __init__(self, config: LUCIRConfig, seed: int = 0):
        super().__init__(config, seed)
        self.memory = HerdingMemory(config.buffer_size)
        self.teacher: nn.Module | None = None
        self.old_classes: torch.Tensor | None = None
        self._frozen: torch.Tensor | None = None  # old classes' weight rows during an experience

    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """MLP backbone (last ReLU removed unless ``last_relu``) and a cosine head."""
        backbone = MLP(input_shape, self.config.hidden)
        if not self.config.last_relu and isinstance(backbone.net[-1], nn.ReLU):
            backbone.net = backbone.net[:-1]  # hidden=() has no ReLU: the features are the inputs
        model = Classifier(backbone, backbone.out_dim, num_classes)
        model.head = CosineClassifier(backbone.out_dim, num_classes)
        return model

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Train on the experience's data together with the exemplars (one shuffled set)."""
        if len(self.memory):
            mx, my = self.memory.tensors()
            x, y = torch.cat([x, mx]), torch.cat([y, my])
        super().fit(x, y, experience)

    def before_experience(self, experience: Experience) -> None:
        self.teacher = self._frozen = None
        if self.old_classes is None or not self.old_classes.any():
            return
        self.teacher = frozen_copy(self.model)
        w = self.model.head.weight
        new = self.classes.seen & ~self.old_classes
        if self.config.imprint and new.any():
            x, y = experience.train_tensors()
            was = self.model.training
            self.model.eval()
            with torch.no_grad():
                f = F.normalize(self.model.features(x), dim=1)
                sums = torch.zeros(self.num_classes, f.shape[1]).index_add_(0, y, f)
                norm = w[self.old_classes].norm(dim=1).mean()
                w[new] = F.normalize(sums[new], dim=1) * norm
            self.model.train(was)
        self._frozen = w.detach()[self.old_classes].clone()

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        f = self.model.features(x)
        cos = self.model.head.cosine(f)
        seen = self.classes.seen
        ce = F.cross_entropy((self.model.head.sigma * cos).masked_fill(~seen, float("-inf")), y)
        if self.teacher is None:
            return ce
        old, new = self.old_classes, seen & ~self.old_classes
        with torch.no_grad():
            f_old = self.teacher.features(x)
        lam = self.config.lambda_base * math.sqrt(float(old.sum()) / max(float(new.sum()), 1.0))
        less_forget = (1 - F.cosine_similarity(f, f_old, dim=1)).mean()
        loss = ce + lam * less_forget
        on_old = old[y]
        k = min(self.config.k_hard, int(new.sum()))
        if on_old.any() and k > 0 and self.config.mr_weight > 0:
            c = cos[on_old]
            gt = c.gather(1, y[on_old].unsqueeze(1))  # (b, 1)
            hard = c[:, new].topk(k, dim=1).values  # (b, k)
            loss = loss + self.config.mr_weight * F.relu(self.config.margin - gt + hard).mean()
        return loss

    def after_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        if self._frozen is not None:  # old classes' weights stay as they were (the official lr 0 for them)
            with torch.no_grad():
                self.model.head.weight[self.old_classes] = self._frozen

    def after_experience(self, experience: Experience) -> None:
        self.old_classes = self.classes.seen.clone()
        self.teacher = self._frozen = None  # rebuilt from the model at the next experience
        x, y = experience.train_tensors()
        was = self.model.training
        self.model.eval()
        self.memory.update(x, y, self.model.features, int(self.classes.seen.sum()))
        self.model.train(was)

    def extra_state(self) -> dict:
        state: dict = {"memory": self.memory.state_dict()}
        if self.old_classes is not None:
            state["old_classes"] = self.old_classes.clone()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        if "old_classes" in state:
            self.old_classes = state["old_classes"].to(torch.bool)
