"""Averaged Gradient Episodic Memory (A-GEM; Chaudhry et al., "Efficient Lifelong Learning with A-GEM",
ICLR 2019, arXiv 1812.00420).

Before each update the gradient ``g`` of the current batch is compared with a reference gradient
``g_ref`` of the loss on a random batch from the episodic memory of earlier experiences; if they
conflict (``g . g_ref < 0``) the update uses ``g`` with its component along ``g_ref`` removed
(:func:`lifelong.optim.projection.agem_project`, applied as an optimizer pre-step hook). The memory
holds only earlier experiences: at the end of an experience its training examples are offered to it,
as in the paper; the default policy gives each experience an equal share of the slots (the paper's
per-task episodic memory; reservoir within an experience rather than its ring buffer). Defaults:
reference batch 256 (the paper's), memory 200 (ER's); lr / batch / epochs are the library's shared
settings (the paper and the official Mammoth best arguments for Seq-MNIST use plain SGD at lr 0.1).
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
from lifelong.optim.projection import agem_project, assign_flat_grad, flat_grad

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class AGEMConfig(GradientConfig):
    """A-GEM settings."""

    buffer_size: int = hp(200, "episodic memory capacity in examples (all earlier experiences together)")
    buffer: str = hp(
        "experience-balanced",
        "memory policy: experience-balanced (equal slots per experience, the paper's) | reservoir | class-balanced",
    )
    reference_batch_size: int = hp(256, "memory examples in the reference gradient (the paper's 256)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if self.buffer not in BUFFER_KINDS:
            raise ConfigError(f"buffer must be one of {', '.join(BUFFER_KINDS)}; got {self.buffer!r}")
        if self.reference_batch_size < 1:
            raise ConfigError(f"reference_batch_size must be >= 1, got {self.reference_batch_size}")


@register("agem")
class AGEM(GradientLearner):
    """A-GEM: project the update when it would raise the loss on a batch of the episodic memory."""

    config_class = AGEMConfig

    def __init__(self, config: AGEMConfig, seed: int = 0):
        super().__init__(config, seed)
        self.buffer = make_buffer(config.buffer, config.buffer_size)
        self.projections = 0  # steps whose gradient was projected (for diagnostics and tests)

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """The shared training loop with :meth:`project` run just before each optimizer step."""
        handle = self.optimizer.register_step_pre_hook(lambda *_: self.project())
        try:
            super().fit(x, y, experience)
        finally:
            handle.remove()

    def project(self) -> None:
        """Replace the gradient by its A-GEM projection against a memory batch's reference gradient."""
        if not len(self.buffer):
            return
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        m = self.buffer.sample(self.config.reference_batch_size, self.generator)
        with torch.enable_grad():
            ref = F.cross_entropy(self.logits(m["x"]), m["y"])
            grads = torch.autograd.grad(ref, params, allow_unused=True)
        g_ref = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
        self.samples_seen += len(m["y"])
        g = flat_grad(params)
        new = agem_project(g, g_ref)
        if new is not g:
            self.projections += 1
            assign_flat_grad(params, new)

    def after_experience(self, experience: Experience) -> None:
        """Offer the experience's training examples to the episodic memory."""
        x, y = experience.train_tensors()
        self.buffer.new_experience(experience.index, self.generator)
        self.buffer.add(self.generator, x=x, y=y)

    def extra_state(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "projections": self.projections}

    def load_extra_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.projections = int(state["projections"])
