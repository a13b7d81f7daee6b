"""BiC (Wu et al., "Large Scale Incremental Learning", CVPR 2019, arXiv 1905.13260).

Stage 1 trains on the new data plus herded exemplars with ``(1 - lambda) * CE + lambda * T^2 * KD``, where KD is the
soft cross-entropy (T = 2) between the old and new model's bias-corrected outputs on the old classes and
``lambda = old classes / classes seen``. A validation part (``val_fraction`` = 0.1 of each old class's exemplars, the
same count per new class from the new data, the paper's 9:1 split) is held out of stage 1; stage 2 then fits one
``(alpha, beta)`` on the new classes' logits (:class:`lifelong.heads.bias_correction.BiasCorrection`) on it with the
network frozen. Earlier steps' corrections stay fixed and apply in training, distillation and prediction, as in the
official code. Adapted: weight decay 2e-4 (official CIFAR-100 code); stage 2 is full-batch Adam on cached logits,
lr 0.01 for 500 steps (official: Adam lr 1e-3, mini-batches, 250 epochs); memory 200 (the paper's 2000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from lifelong.encoders.frozen import frozen_copy
from lifelong.errors import ConfigError
from lifelong.heads.bias_correction import BiasCorrection
from lifelong.memory.herding import HerdingMemory, stratified_holdout
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class BiCConfig(GradientConfig):
    """BiC settings (T = 2, 9:1 train/validation split as in the paper)."""

    #: per data kind (lifelong.data.kinds). On sentence embeddings: a linear head at lr 0.1 (the base's lr 1 is
    #: too large once the T^2-weighted distillation is added). The memory stays 200, the budget every replay
    #: method gets by default, so `lifelong run` compares them at equal memory; on CLINC150 (150 intents) that
    #: leaves ~1 exemplar per class, too few for the 9:1 split the bias layer is fitted on, and BiC reaches only
    #: ~18 % there (84.4 % with the paper's memory of 2000: set method.buffer_size=2000). Chosen on CLINC150 seed 0
    #: from memory {200, 1000, 2000} x lr {0.03, 0.1, 0.3, 1}; confirmed on HWU64 (text-file).
    data_defaults: ClassVar[dict[str, dict]] = {
        "pixels": {"lr": 0.05},
        "embeddings": {"hidden": (), "lr": 0.1},
    }

    buffer_size: int = hp(200, "exemplar memory in examples, shared equally by the classes seen (herding)")
    temperature: float = hp(2.0, "distillation temperature T")
    val_fraction: float = hp(0.1, "share of each old class's exemplars held out to fit the bias layer")
    bias_steps: int = hp(500, "full-batch Adam steps fitting the bias layer")
    bias_lr: float = hp(0.01, "Adam learning rate of the bias layer")
    weight_decay: float = hp(2e-4, "L2 weight decay (the official code's 2e-4)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.bias_steps < 0 or not self.bias_lr > 0:
            raise ConfigError(f"bias_steps must be >= 0 and bias_lr > 0, got {self.bias_steps}, {self.bias_lr}")


@register("bic")
class BiC(GradientLearner):
    """Bias correction: distillation with herded exemplars, then an affine fix of the new classes' logits."""

    config_class = BiCConfig

    def __init__(self, config: BiCConfig, seed: int = 0):
        super().__init__(config, seed)
        self.memory = HerdingMemory(config.buffer_size)
        self.bias: BiasCorrection | None = None
        self.teacher: torch.nn.Module | None = None
        self.old_classes: torch.Tensor | None = None
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Build the model and an identity bias layer."""
        super().prepare(input_shape, num_classes)
        self.bias = BiasCorrection(num_classes)

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Hold out the validation part (after the first experience), then train on the rest plus the exemplars."""
        self._val = None
        if self.old_classes is not None and self.old_classes.any() and len(self.memory):
            mx, my = self.memory.tensors()
            n_val = max(1, round(self.config.val_fraction * self.memory.per_class(int(self.old_classes.sum()))))
            quota = torch.full((self.num_classes,), n_val)
            held_new = stratified_holdout(y, quota, self.generator)
            held_mem = stratified_holdout(my, quota, self.generator)
            self._val = (torch.cat([x[held_new], mx[held_mem]]), torch.cat([y[held_new], my[held_mem]]))
            x, y = torch.cat([x[~held_new], mx[~held_mem]]), torch.cat([y[~held_new], my[~held_mem]])
        elif len(self.memory):
            mx, my = self.memory.tensors()
            x, y = torch.cat([x, mx]), torch.cat([y, my])
        super().fit(x, y, experience)

    def before_experience(self, experience: Experience) -> None:
        self.teacher = None
        if self.old_classes is not None and self.old_classes.any():
            self.teacher = frozen_copy(self.model)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        out = self.bias(self.model(x))
        ce = F.cross_entropy(out.masked_fill(~self.classes.seen, float("-inf")), y)
        if self.teacher is None:
            return ce
        old = self.old_classes
        T = self.config.temperature
        with torch.no_grad():
            soft = F.softmax(self.bias(self.teacher(x))[:, old] / T, dim=1)
        kd = -(soft * F.log_softmax(out[:, old] / T, dim=1)).sum(1).mean()
        lam = float(old.sum()) / float(self.classes.seen.sum())
        return (1 - lam) * ce + lam * T * T * kd

    def _val_has_both(self, new: torch.Tensor) -> bool:
        """Whether the held-out part has examples of new AND old classes (else the bias fit is skipped).

        With one exemplar per old class nothing of them can be held out (the hold-out keeps one per
        class), and a fit on new-class examples alone only learns to raise the new logits: on CLINC150
        (150 classes, memory 200) it pushed beta to +2 and wiped out every old class (9.1 % at lr 0.1,
        vs 18.2 % with this check).
        """
        is_new = new[self._val[1]]
        return bool(is_new.any() and (~is_new).any())

    def after_experience(self, experience: Experience) -> None:
        was = self.model.training
        self.model.eval()
        new = None if self.old_classes is None else self.classes.seen & ~self.old_classes
        if self._val is not None and self.config.bias_steps > 0 and self._val_has_both(new):
            vx, vy = self._val
            with torch.no_grad():
                logits = self.model(vx)
            self.bias.fit_group(logits, vy, new, self.classes.seen, self.config.bias_steps, self.config.bias_lr)
        self._val = None
        self.old_classes = self.classes.seen.clone()
        self.teacher = None  # rebuilt from the model at the next experience
        x, y = experience.train_tensors()
        self.memory.update(x, y, self.model.features, int(self.classes.seen.sum()))
        self.model.train(was)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Bias-corrected logits over the classes seen so far."""
        if self.model is None:
            return torch.empty(len(x), 0)
        was = self.model.training
        self.model.eval()
        scores = self.classes.mask(self.bias(self.model(x)), task_id)
        self.model.train(was)
        return scores

    def extra_state(self) -> dict:
        state: dict = {"memory": self.memory.state_dict(), "bias": dict(self.bias.state_dict())}
        if self.old_classes is not None:
            state["old_classes"] = self.old_classes.clone()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        self.bias.load_state_dict(state["bias"])
        if "old_classes" in state:
            self.old_classes = state["old_classes"].to(torch.bool)
