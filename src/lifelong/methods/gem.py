"""Gradient Episodic Memory (GEM; Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning",
NeurIPS 2017, arXiv 1706.08840).

GEM keeps an episodic memory per experience and, at every step, computes the loss gradient on each
earlier experience's memory. If the current gradient conflicts with any of them (negative dot product)
it is replaced by the closest gradient that conflicts with none, found by the paper's dual QP
(:func:`lifelong.optim.projection.gem_project`, an active-set solver in torch instead of the official
code's ``quadprog``; applied as an optimizer pre-step hook). Defaults: ``margin = 0.5`` (the paper's
"memory strength") and the official code's ``eps = 1e-3`` ridge; memory 200 in all, equal slots per
experience (the paper stores a fixed number per task, the last ones seen; here each experience's share is
a uniform sample of it, offered at the end of the experience). lr / batch / epochs are the library's shared
settings. Class-incremental use: the memory losses use the growing head over the classes seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.memory import BUFFER_KINDS, make_buffer
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register
from lifelong.optim.projection import assign_flat_grad, flat_grad, gem_project

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class GEMConfig(GradientConfig):
    """GEM settings."""

    buffer_size: int = hp(200, "episodic memory capacity in examples (all earlier experiences together)")
    buffer: str = hp(
        "experience-balanced",
        "memory policy: experience-balanced (equal slots per experience, the paper's) | reservoir | class-balanced",
    )
    margin: float = hp(0.5, "lower bound on the dual variables of the QP (the paper's memory strength, gamma)")
    eps: float = hp(1e-3, "ridge added to the QP's Gram matrix (the official code's)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if self.buffer not in BUFFER_KINDS:
            raise ConfigError(f"buffer must be one of {', '.join(BUFFER_KINDS)}; got {self.buffer!r}")
        if self.margin < 0 or not self.eps > 0:
            raise ConfigError(f"margin must be >= 0 and eps > 0, got margin={self.margin}, eps={self.eps}")


@register("gem")
class GEM(GradientLearner):
    """GEM: keep the update from raising the loss on any earlier experience's memory (QP projection)."""

    config_class = GEMConfig

    def __init__(self, config: GEMConfig, seed: int = 0):
        super().__init__(config, seed)
        self.buffer = make_buffer(config.buffer, config.buffer_size)
        self.projections = 0  # steps whose gradient was projected (for diagnostics and tests)
        self._memories: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def memories(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) of the memory of each earlier experience (fixed during an experience, so cached)."""
        if self._memories is None:
            m = self.buffer.all() if len(self.buffer) else {}
            if not m:
                self._memories = []
            else:
                exps = m["experience"]
                self._memories = [(m["x"][exps == e], m["y"][exps == e]) for e in exps.unique().tolist()]
        return self._memories

    def memory_gradients(self, params: list[torch.Tensor]) -> torch.Tensor:
        """(t, p): the gradient of the loss on each earlier experience's memory."""
        rows = []
        with torch.enable_grad():
            for x, y in self.memories():
                grads = torch.autograd.grad(F.cross_entropy(self.logits(x), y), params, allow_unused=True)
                rows.append(
                    torch.cat(
                        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]
                    )
                )
                self.samples_seen += len(y)
        return torch.stack(rows)

    def project(self) -> None:
        """Replace the gradient by GEM's projection when it conflicts with an earlier experience's gradient."""
        if not self.memories():
            return
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        G = self.memory_gradients(params)
        g = flat_grad(params)
        if bool((G @ g < 0).any()):
            self.projections += 1
            assign_flat_grad(params, gem_project(g, G, self.config.margin, self.config.eps))

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """The shared training loop with :meth:`project` run just before each optimizer step."""
        self._memories = None
        handle = self.optimizer.register_step_pre_hook(lambda *_: self.project())
        try:
            super().fit(x, y, experience)
        finally:
            handle.remove()

    def after_experience(self, experience: Experience) -> None:
        """Offer the experience's training examples to the episodic memory, tagged with its index."""
        x, y = experience.train_tensors()
        self.buffer.new_experience(experience.index, self.generator)
        self.buffer.add(self.generator, x=x, y=y, experience=torch.full_like(y, experience.index))
        self._memories = None

    def extra_state(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "projections": self.projections}

    def load_extra_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.projections = int(state["projections"])
        self._memories = None
