"""Memory Aware Synapses (MAS): importance from the sensitivity of the outputs, a quadratic penalty.

Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars, "Memory Aware Synapses: Learning what (not) to
forget", ECCV 2018 (arXiv 1711.09601). After each experience the importance of every parameter is the
mean over the experience's training inputs of ``|d ||f(x)||_2^2 / d theta|`` (``f`` the outputs of the
classes seen so far; no labels, so it could use unlabelled data), added to the importance of earlier
experiences (the official code's accumulation), and later experiences add
``lambda * sum Omega (theta - theta*)^2`` to the loss. The estimator lives in
:func:`lifelong.optim.importance.output_sensitivity`.

Defaults: ``lambda = 1`` (the paper's object-recognition setting); per-example gradients over all the
experience's training inputs (the paper's definition; ``importance_samples`` caps them). The optimizer,
lr, epochs and MLP are the library's shared defaults. ``loss_scope="current"`` gives the multi-head
(task-incremental) loss over the current experience's classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register
from lifelong.optim.importance import output_sensitivity, quadratic_penalty

if TYPE_CHECKING:
    from lifelong.scenarios import Experience

LOSS_SCOPES = ("seen", "current")


@dataclass
class MASConfig(GradientConfig):
    """MAS settings (paper: lambda = 1)."""

    #: the penalty grows with the step: SGD at the shared pixel lr 0.05 (or the embedding lr 1) diverges, so
    #: keep lr 0.01 on pixels and take 0.03 with a linear head on sentence embeddings
    data_defaults: ClassVar[dict[str, dict]] = {"pixels": {}, "embeddings": {"hidden": (), "lr": 0.03}}

    mas_lambda: float = hp(1.0, "penalty strength lambda (paper: 1)")
    importance_samples: int = hp(0, "training inputs used to estimate the importance (0 = all, the paper)")
    loss_scope: str = hp(
        "seen", "classes in the training cross-entropy: seen (single head) | current (multi-head, task-incremental)"
    )

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.mas_lambda < 0:
            raise ConfigError(f"mas_lambda must be >= 0, got {self.mas_lambda}")
        if self.importance_samples < 0:
            raise ConfigError(f"importance_samples must be >= 0 (0 = all), got {self.importance_samples}")
        if self.loss_scope not in LOSS_SCOPES:
            raise ConfigError(f"loss_scope must be one of {LOSS_SCOPES}, got {self.loss_scope!r}")


@register("mas")
class MAS(GradientLearner):
    """Memory Aware Synapses: output-sensitivity importance, quadratic penalty towards the last solution."""

    config_class = MASConfig

    def __init__(self, config: MASConfig, seed: int = 0):
        super().__init__(config, seed)
        self.importance: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self._current: torch.Tensor | None = None

    def before_experience(self, experience: Experience) -> None:
        """Note the experience's classes (for ``loss_scope="current"``)."""
        current = torch.zeros(self.num_classes, dtype=torch.bool)
        current[list(experience.classes)] = True
        self._current = current

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        """Cross-entropy (seen or current classes) + ``lambda * sum Omega (theta - theta*)^2``."""
        out = self.model(x)
        allowed = self.classes.seen if self.config.loss_scope == "seen" else self.classes.seen & self._current
        ce = F.cross_entropy(out.masked_fill(~allowed, float("-inf")), y)
        if not self.importance:
            return ce
        return ce + self.config.mas_lambda * quadratic_penalty(
            self.model.named_parameters(), self.importance, self.anchor
        )

    def after_experience(self, experience: Experience) -> None:
        """Add this experience's output sensitivity to the importance; anchor at the current parameters."""
        x, _ = experience.train_tensors()
        k = self.config.importance_samples
        if k and k < len(x):
            x = x[torch.randperm(len(x), generator=self.generator)[:k]]
        new = output_sensitivity(self.model, x, outputs=self.classes.seen)
        self.importance = {n: self.importance[n] + f if n in self.importance else f for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def extra_state(self) -> dict:
        return {"importance": dict(self.importance), "anchor": dict(self.anchor)}

    def load_extra_state(self, state: dict) -> None:
        self.importance = {n: t.clone() for n, t in state["importance"].items()}
        self.anchor = {n: t.clone() for n, t in state["anchor"].items()}
