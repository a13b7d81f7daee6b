"""Experience replay (ER; Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning").

Each training batch is concatenated with an equal-sized batch drawn uniformly
from a replay buffer; stream examples enter the buffer by reservoir sampling (or
class-balanced reservoir sampling) after each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.memory import make_buffer
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class ERConfig(GradientConfig):
    """ER settings."""

    buffer_size: int = hp(200, "replay buffer capacity in examples")
    buffer: str = hp("reservoir", "buffer policy: reservoir | class-balanced")
    replay_batch_size: int = hp(0, "examples replayed per step (0: same as the batch size)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if self.buffer not in ("reservoir", "class-balanced"):
            raise ConfigError(f"buffer must be 'reservoir' or 'class-balanced', got {self.buffer!r}")


@register("er")
class ER(GradientLearner):
    """Experience replay with a reservoir or class-balanced buffer."""

    config_class = ERConfig

    def __init__(self, config: ERConfig, seed: int = 0):
        super().__init__(config, seed)
        self.buffer = make_buffer(config.buffer, config.buffer_size)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        if len(self.buffer):
            m = self.buffer.sample(self.config.replay_batch_size or len(y), self.generator)
            x = torch.cat([x, m["x"]])
            y = torch.cat([y, m["y"]])
            self.samples_seen += len(m["y"])
        return F.cross_entropy(self.logits(x), y)

    def after_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        self.buffer.add(self.generator, x=x, y=y)

    def extra_state(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
