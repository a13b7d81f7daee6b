"""PRD: prototype-sample relation distillation, a replay-free class-incremental method.

Prototype-Sample Relation Distillation: Towards Replay-Free Continual Learning (arXiv 2303.14771). An encoder
is trained with SupCon on two views, class prototypes are learned on detached features, and after each
experience a distillation keeps the old prototypes' similarity relations to new samples (teacher: the frozen
encoder and prototypes). Loss ``L_SupCon + prototypes_coef * L_p + distill_coef * L_d``; prediction is cosine
to the seen classes' prototypes. ``distill_coef=0`` is the paper's no-distillation ablation.

Notes: docs/papers/prd.md
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data.augment import augment
from lifelong.encoders import MLP
from lifelong.errors import ConfigError
from lifelong.heads.losses import soft_cross_entropy, supcon_loss
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register
from lifelong.optim import build_optimizer

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class PRDConfig(GradientConfig):
    """PRD settings (official-code defaults where known)."""

    #: pixels: at batch 128 x 10 epochs an experience of digits is 30 steps, too few for SupCon and for the
    #: prototypes (lr 0.01, no momentum) to leave their random start: 9.9 % final accuracy on digits (NCM
    #: 88.3 %), 0.49 on the last experience right after learning it. Picked on seed 0 of split MNIST (final
    #: accuracy; batch 32, 20 epochs): lr 0.05 / distill 4: 41.4 %, + prototypes_lr 0.1: 36.6 %, distill 12:
    #: 23.2 %, both: 26.8 %; lr 0.02 / distill 12: 46.8 %, + prototypes_lr 0.1: 32.3 % (the reproduction's
    #: validation tuning on digits also picks lr 0.02 / distill 12). At 20 epochs an experience of digits is
    #: ~180 steps: 35.2 % on digits (NCM 88.3 %). Then, towards the paper's 100 epochs and the official sweep's
    #: prototype weight {4, 8}: two partial grids over epochs {20, 50, 100} x lr {0.02, 0.05, 0.1} x noise
    #: {0.1, 0.05, 0.02} x prototypes_coef {2, 4, 8} on validation streams (20 % of the training images held
    #: out, class orders of seeds 100-105; the test split never seen): 50 epochs / weight 4 at lr 0.02, noise
    #: 0.1 gives 46.3 % on digits (6 seeds; 20 epochs / weight 2: 38.0 %, NCM 89.9 %) and 47.6 % on split
    #: MNIST (5 seeds; 20 epochs / weight 2: 52.9 %, NCM 80.3 %, seed spread +-9: within noise). lr 0.05 with
    #: noise 0.05 scored best on digits (54.9 %) but 36.5 % on split MNIST: the pick has the best lower ratio
    #: to NCM of the two.
    #: On the defaults matrix's test streams (seed 0): digits 35.2 -> 50.3 % (NCM 88.3 %), split MNIST
    #: 46.8 -> 38.9 % (NCM 80.4 %).
    #: embeddings: the linear default (hidden ()) leaves the encoder the identity, so SupCon and the relation
    #: distillation have nothing to train and PRD is cosine prototypes on the frozen sentence features,
    #: learned without stored data; at prototypes_lr 0.01 they barely leave their random start (59.1 % on
    #: CLINC150, NCM 92.0 %). Validation (CLINC150, 20 % of the training sentences, class order of seed 100):
    #: prototypes_lr 0.01 / 0.1 / 1: 53.8 / 92.5 / 92.6 %; a trainable encoder (hidden 256, lr 0.05 / 0.1 /
    #: 0.3) forgets the earlier experiences whatever the distillation: 12.3 / 11.1 / 7.0 %.
    data_defaults: ClassVar[dict[str, dict]] = {
        **GradientConfig.data_defaults,
        "pixels": {"lr": 0.02, "batch_size": 32, "epochs": 50, "distill_coef": 12.0, "prototypes_coef": 4.0},
        "embeddings": {**GradientConfig.data_defaults["embeddings"], "prototypes_lr": 0.1},
    }

    weight_decay: float = hp(1e-4, "L2 weight decay of the encoder (official: 1e-4)")
    batch_size: int = hp(128, "mini-batch size (paper: 128)")
    epochs: int = hp(10, "passes over each experience (paper: 100 on CIFAR-100 with ResNet-18)")
    supcon_temperature: float = hp(0.1, "SupCon temperature")
    base_temperature: float = hp(0.07, "SupCon loss is scaled by temperature / base_temperature")
    projection_dim: int = hp(128, "output size of the projection head")
    prototypes_lr: float = hp(0.01, "learning rate of the prototypes (no momentum, no weight decay)")
    prototypes_coef: float = hp(2.0, "weight of the prototype loss L_p")
    distill_coef: float = hp(4.0, "weight of the relation distillation loss L_d (0: no distillation)")
    distill_temperature: float = hp(1.0, "temperature tau of the relation distillation")
    noise: float = hp(0.1, "augmentation: Gaussian noise std relative to each example's RMS")
    shift: int = hp(1, "augmentation: max pixel translation (images only)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if not (self.supcon_temperature > 0 and self.base_temperature > 0 and self.distill_temperature > 0):
            raise ConfigError("supcon_temperature, base_temperature and distill_temperature must be > 0")
        if self.prototypes_coef < 0 or self.distill_coef < 0:
            raise ConfigError(
                f"prototypes_coef and distill_coef must be >= 0, got {self.prototypes_coef}, {self.distill_coef}"
            )
        if not self.prototypes_lr > 0:
            raise ConfigError(f"prototypes_lr must be > 0, got {self.prototypes_lr}")
        if self.projection_dim < 1 or self.noise < 0 or self.shift < 0:
            raise ConfigError("projection_dim must be >= 1 and noise, shift >= 0")


class PrototypeNet(nn.Module):
    """Encoder + projection head + one prototype per class in the encoder's feature space.

    ``forward`` returns the cosine similarity of each input's feature to every prototype.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, projection_dim: int):
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, projection_dim)
        )
        self.prototypes = nn.Parameter(nn.Linear(feature_dim, num_classes, bias=False).weight.detach().clone())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (the space of the prototypes)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x), dim=1) @ F.normalize(self.prototypes, dim=1).T


@register("prd")
class PRD(GradientLearner):
    """Prototype-sample relation distillation: SupCon + prototypes + relation distillation, no stored data."""

    config_class = PRDConfig

    def __init__(self, config: PRDConfig, seed: int = 0):
        super().__init__(config, seed)
        self.teacher: nn.Module | None = None
        self.old_prototypes: torch.Tensor | None = None
        self.groups: list[list[int]] = []  # classes first seen in each finished experience
        self._group_masks: list[torch.Tensor] = []

    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        backbone = MLP(input_shape, self.config.hidden)
        return PrototypeNet(backbone, backbone.out_dim, num_classes, self.config.projection_dim)

    def make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        model: PrototypeNet = self.model
        rest = [p for n, p in model.named_parameters() if n != "prototypes" and p.requires_grad]
        groups = [
            {"params": rest},
            {"params": [model.prototypes], "lr": c.prototypes_lr, "momentum": 0.0, "weight_decay": 0.0},
        ]
        return build_optimizer(c.optimizer, groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.generator, noise=self.config.noise, shift=self.config.shift)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        c = self.config
        model: PrototypeNet = self.model
        views = torch.cat([self._view(x), self._view(x)])
        y2 = y.repeat(2)
        h = model.features(views)
        z = F.normalize(model.projector(h), dim=1)
        loss = supcon_loss(z, y2, c.supcon_temperature, c.base_temperature)
        if c.prototypes_coef > 0:
            cos = F.cosine_similarity(h.detach(), model.prototypes[y2], dim=1)
            loss = loss + c.prototypes_coef * (1 - cos).mean()
        if c.distill_coef > 0 and self.teacher is not None:
            loss = loss + c.distill_coef * self.relation_distillation(h, views)
        return loss

    def relation_distillation(self, h: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """``L_d``: per earlier experience, CE between the teacher's and the student's softened scores."""
        model: PrototypeNet = self.model
        with torch.no_grad():
            h_old = self.teacher(views)
            s_old = h_old @ F.normalize(self.old_prototypes, dim=1).T
        s_new = h @ F.normalize(model.prototypes, dim=1).T
        tau = self.config.distill_temperature
        total = h.sum() * 0.0
        for cols in self._group_masks:
            total = total + soft_cross_entropy(s_new[:, cols], s_old[:, cols], tau)
        return total

    def after_experience(self, experience: Experience) -> None:
        known = {c for g in self.groups for c in g}
        new = sorted(int(c) for c in torch.nonzero(self.classes.seen).flatten().tolist() if c not in known)
        if new:
            self.groups.append(new)
        self._group_masks = [torch.tensor(g, dtype=torch.long) for g in self.groups]
        self.teacher = copy.deepcopy(self.model.backbone).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.old_prototypes = self.model.prototypes.detach().clone()

    def stored_examples(self) -> int:
        """Number of training examples the learner keeps: always 0 (replay-free)."""
        return 0

    def extra_state(self) -> dict:
        state = {"groups": [list(g) for g in self.groups], "has_teacher": self.teacher is not None}
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
            state["old_prototypes"] = self.old_prototypes.clone()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.groups = [[int(c) for c in g] for g in state["groups"]]
        self._group_masks = [torch.tensor(g, dtype=torch.long) for g in self.groups]
        if state["has_teacher"]:
            self.teacher = copy.deepcopy(self.model.backbone).eval()
            self.teacher.load_state_dict(state["teacher"])
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            self.old_prototypes = state["old_prototypes"].clone()
