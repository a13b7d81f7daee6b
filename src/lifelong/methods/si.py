"""Synaptic Intelligence (SI): online path-integral importance and a quadratic penalty.

Zenke, Poole & Ganguli, "Continual Learning Through Synaptic Intelligence", ICML 2017 (arXiv 1703.04200).
During each experience every parameter accumulates ``omega += -g * delta`` over the optimizer steps
(``g`` the gradient of the task loss without the penalty, ``delta`` the step's change, as the official
``pathint`` code's ``unreg_grads``); at the end ``Omega <- relu(Omega + omega / (Delta^2 + xi))`` with
``Delta`` the change over the experience, and later experiences add ``c * sum Omega (theta - theta*)^2``
(``theta*`` the parameters at the end of the previous experience). The estimator lives in
:class:`lifelong.optim.importance.PathIntegral`.

Defaults: ``c = 1`` and ``xi = 1e-3``, the official split-MNIST notebook (``fig_split_mnist``: ``cvals =
[0, 1.0]``, ``PATH_INT_PROTOCOL(omega_decay='sum', xi=1e-3)``); the optimizer, lr, epochs and MLP are the
library's shared defaults (the paper uses Adam 1e-3, 10 epochs, batch 64 and a multi-head MLP 256-256).
``loss_scope="current"`` gives the paper's multi-head (task-incremental) loss over the current
experience's classes; ``"seen"`` (default) a single head over all classes seen so far.
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
from lifelong.optim.importance import PathIntegral, penalty_gradient, quadratic_penalty

if TYPE_CHECKING:
    from lifelong.scenarios import Experience

LOSS_SCOPES = ("seen", "current")


@dataclass
class SIConfig(GradientConfig):
    """SI settings (official split-MNIST values: c = 1, xi = 1e-3)."""

    #: the penalty grows with the step: SGD at the shared pixel lr 0.05 (or the embedding lr 1) diverges, so
    #: keep lr 0.01 on pixels and take 0.03 with a linear head on sentence embeddings
    data_defaults: ClassVar[dict[str, dict]] = {"pixels": {}, "embeddings": {"hidden": (), "lr": 0.03}}

    si_c: float = hp(1.0, "penalty strength c (official split MNIST: 1.0)")
    xi: float = hp(1e-3, "damping xi of omega / (Delta^2 + xi) (official split MNIST: 1e-3)")
    loss_scope: str = hp(
        "seen", "classes in the training cross-entropy: seen (single head) | current (multi-head, task-incremental)"
    )

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.si_c < 0:
            raise ConfigError(f"si_c must be >= 0, got {self.si_c}")
        if not self.xi > 0:
            raise ConfigError(f"xi must be > 0 (it divides omega), got {self.xi}")
        if self.loss_scope not in LOSS_SCOPES:
            raise ConfigError(f"loss_scope must be one of {LOSS_SCOPES}, got {self.loss_scope!r}")


@register("si")
class SI(GradientLearner):
    """Synaptic Intelligence: path-integral importance, quadratic penalty towards the last solution."""

    config_class = SIConfig

    def __init__(self, config: SIConfig, seed: int = 0):
        super().__init__(config, seed)
        self.path = PathIntegral(config.xi)
        self._current: torch.Tensor | None = None

    def _params(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def before_experience(self, experience: Experience) -> None:
        """Start the path integral at the current parameters; note the experience's classes."""
        self.path.start(self._params())
        current = torch.zeros(self.num_classes, dtype=torch.bool)
        current[list(experience.classes)] = True
        self._current = current

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        """Cross-entropy (seen or current classes) + ``c * sum Omega (theta - theta*)^2``."""
        out = self.model(x)
        allowed = self.classes.seen if self.config.loss_scope == "seen" else self.classes.seen & self._current
        ce = F.cross_entropy(out.masked_fill(~allowed, float("-inf")), y)
        if not self.path.importance:
            return ce
        return ce + self.config.si_c * quadratic_penalty(
            self.model.named_parameters(), self.path.importance, self.path.anchor
        )

    def after_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Accumulate ``-g * delta`` with ``g`` the task-loss gradient (the penalty's gradient removed)."""
        params = self._params()
        grads = {n: p.grad for n, p in params.items() if p.grad is not None}
        if self.path.importance:
            # the step's gradient was taken at the previous parameters: remove the penalty's part there
            pen = penalty_gradient(self.path.previous, self.path.importance, self.path.anchor, self.config.si_c)
            grads = {n: g - pen[n] if n in pen else g for n, g in grads.items()}
        self.path.step(params, grads)

    def after_experience(self, experience: Experience) -> None:
        """Consolidate: ``Omega += omega / (Delta^2 + xi)``, anchor at the current parameters."""
        self.path.consolidate(self._params())

    def extra_state(self) -> dict:
        return self.path.state()

    def load_extra_state(self, state: dict) -> None:
        self.path.load(state)
