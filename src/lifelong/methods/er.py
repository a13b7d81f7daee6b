"""Experience replay (ER; Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning").

Each training batch is concatenated with an equal-sized batch drawn uniformly
from a replay buffer; stream examples enter the buffer by reservoir sampling (or
class-balanced reservoir sampling, or with equal slots per experience) after each step.
With ``parents`` (a depth-2 label tree, e.g. ``class_parents(stream)`` of a hierarchical stream) the head is a per-level
softmax (:class:`lifelong.heads.LevelSoftmax`) instead of one flat softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.heads.hierarchy import LevelSoftmax
from lifelong.memory import BUFFER_KINDS, make_buffer
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class ERConfig(GradientConfig):
    """ER settings."""

    buffer_size: int = hp(200, "replay buffer capacity in examples")
    buffer: str = hp("reservoir", "buffer policy: reservoir | class-balanced | experience-balanced")
    replay_batch_size: int = hp(0, "examples replayed per step (0: same as the batch size)")
    parents: tuple[int, ...] = hp(
        (), "label tree: coarse class id of each class (-1: coarse) for a per-level softmax; () = flat softmax"
    )
    parent_targets: bool = hp(
        True,
        "with parents: a fine label also trains its coarse parent (False: each example trains only its own "
        "level, as the official HLE code's ER baseline)",
    )

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if self.buffer not in BUFFER_KINDS:
            raise ConfigError(f"buffer must be one of {', '.join(BUFFER_KINDS)}; got {self.buffer!r}")
        if any(int(p) < -1 for p in self.parents):
            raise ConfigError("parents holds coarse class ids or -1; pass class_parents(stream)")


@register("er")
class ER(GradientLearner):
    """Experience replay with a reservoir, class-balanced or experience-balanced buffer."""

    config_class = ERConfig

    def __init__(self, config: ERConfig, seed: int = 0):
        super().__init__(config, seed)
        self.buffer = make_buffer(config.buffer, config.buffer_size)
        self.tree: LevelSoftmax | None = None

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Build the model and, with ``parents``, the per-level head."""
        self.tree = LevelSoftmax(self.config.parents, num_classes) if self.config.parents else None
        super().prepare(input_shape, num_classes)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        if len(self.buffer):
            m = self.buffer.sample(self.config.replay_batch_size or len(y), self.generator)
            x = torch.cat([x, m["x"]])
            y = torch.cat([y, m["y"]])
            self.samples_seen += len(m["y"])
        if self.tree is not None:
            return self.tree.loss(self.model(x), y, self.classes.seen, parent_targets=self.config.parent_targets)
        return F.cross_entropy(self.logits(x), y)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Scores over the seen classes; per-level log-probabilities with ``parents``."""
        if self.tree is None or self.model is None:
            return super().predict(x, task_id)
        was = self.model.training
        self.model.eval()
        s = self.tree.log_probs(self.model(x), self.classes.seen)
        self.model.train(was)
        return self.classes.mask(s, task_id)

    def before_experience(self, experience: Experience) -> None:
        """Tell the buffer a new experience starts (the experience-balanced policy re-splits its slots)."""
        self.buffer.new_experience(experience.index, self.generator)

    def after_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        self.buffer.add(self.generator, x=x, y=y)

    def extra_state(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
