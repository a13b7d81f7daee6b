"""The CFSL baseline learners (Pretrain+Tune with or without replay, ProtoNets), as far as they transfer.

Expanding continual few-shot learning benchmarks to include recognition of specific instances
(arXiv 2209.07863). ``learner="tune"`` trains a network by SGD on each support set in turn (``replay=True``
adds a reservoir of earlier support examples); ``learner="protonet"`` predicts by the nearest class-mean
support embedding. Both are untrained-backbone versions of the paper's baselines: no pre-training on
background classes, and the ProtoNet embedding is the flattened input.

Notes: docs/papers/cfsl-instance.md
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
class CFSLConfig(GradientConfig):
    """CFSL baseline settings (few-shot support sets: many passes over tiny sets)."""

    learner: str = hp("tune", "baseline: tune (Pretrain+Tune without pre-training) | protonet")
    replay: bool = hp(False, "interleave stored past support examples with each new set (tune only)")
    buffer_size: int = hp(2000, "replay buffer capacity in examples")
    replay_batch_size: int = hp(0, "examples replayed per step (0: same as the batch size)")
    epochs: int = hp(20, "passes over each support set")
    lr: float = hp(0.05, "learning rate")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.learner not in ("tune", "protonet"):
            raise ConfigError(f"learner must be 'tune' or 'protonet', got {self.learner!r}")
        if self.buffer_size < 1 or self.replay_batch_size < 0:
            raise ConfigError(
                f"need buffer_size >= 1 and replay_batch_size >= 0, got {self.buffer_size}, {self.replay_batch_size}"
            )


@register("cfsl")
class CFSL(GradientLearner):
    """Pretrain+Tune (with or without replay) or ProtoNet on CFSL support sets (Kowadlo et al. 2024)."""

    config_class = CFSLConfig
    name = "cfsl"

    def __init__(self, config: CFSLConfig, seed: int = 0):
        super().__init__(config, seed)
        self.buffer = make_buffer("reservoir", config.buffer_size)
        self.proto_sum: torch.Tensor | None = None
        self.proto_count: torch.Tensor | None = None

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Build the network and the (empty) prototype sums."""
        super().prepare(input_shape, num_classes)
        dim = int(torch.Size(input_shape).numel())
        self.proto_sum = torch.zeros(num_classes, dim)
        self.proto_count = torch.zeros(num_classes)

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """ProtoNet: add the support set to the prototypes; Pretrain+Tune: SGD epochs (base loop)."""
        if self.config.learner == "protonet":
            self.proto_sum.index_add_(0, y, x.reshape(len(x), -1))
            self.proto_count.index_add_(0, y, torch.ones(len(y)))
            self.samples_seen += len(y)
            return
        super().fit(x, y, experience)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        """Cross-entropy on the support batch, plus a replayed batch of past shots when ``replay``."""
        if self.config.replay and len(self.buffer):
            m = self.buffer.sample(self.config.replay_batch_size or len(y), self.generator)
            x, y = torch.cat([x, m["x"]]), torch.cat([y, m["y"]])
            self.samples_seen += len(m["y"])
        return F.cross_entropy(self.logits(x), y)

    def after_experience(self, experience: Experience) -> None:
        """Store this support set in the replay buffer (once, after training on it)."""
        if self.config.replay and self.config.learner == "tune":
            x, y = experience.train_tensors()
            self.buffer.add(self.generator, x=x, y=y)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Scores over the classes seen so far: network logits, or -squared distance to prototypes."""
        if self.model is None or self.config.learner == "tune":
            return super().predict(x, task_id)
        protos = self.proto_sum / self.proto_count.clamp_min(1.0)[:, None]
        scores = -torch.cdist(x.reshape(len(x), -1), protos).pow(2)
        return self.classes.mask(scores, task_id)

    def extra_state(self) -> dict:
        return {
            "buffer": self.buffer.state_dict(),
            "proto_sum": self.proto_sum.clone(),
            "proto_count": self.proto_count.clone(),
        }

    def load_extra_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.proto_sum = state["proto_sum"].clone()
        self.proto_count = state["proto_count"].clone()
