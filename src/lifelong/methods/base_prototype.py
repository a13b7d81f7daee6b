"""Shared base of prototype classifiers: class-mean prototypes of a frozen embedding, no training.

:class:`PrototypeLearner` keeps the class means (:class:`~lifelong.heads.prototype.PrototypeHead`)
of a frozen encoder's outputs and scores by cosine similarity or negative distance. SimpleCIL
(``simplecil``) and nearest class mean (``ncm``) register it with their own defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from lifelong.encoders.frozen import frozen_encoder
from lifelong.errors import CheckpointError, ConfigError
from lifelong.heads.prototype import METRICS, PrototypeHead, encode_in_batches
from lifelong.methods.base import LearnerBase
from lifelong.methods.config import MethodConfig, hp

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class PrototypeConfig(MethodConfig):
    """Settings of a prototype classifier."""

    metric: str = hp("cosine", "score: cosine (paper, CosineLinear head) | euclidean")
    batch_size: int = hp(1024, "inputs embedded per batch (no effect on results)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


class PrototypeLearner(LearnerBase):
    """Prototype classifier on a frozen embedding (the classifier of SimpleCIL and nearest class mean).

    Args:
        config: :class:`PrototypeConfig` (or a subclass with other defaults).
        seed: unused (prototypes are deterministic); kept for the common constructor.
        encoder: frozen feature function; default the identity over flattened inputs.
    """

    config_class = PrototypeConfig

    def __init__(self, config: PrototypeConfig, seed: int = 0, encoder: Callable | nn.Module | None = None):
        super().__init__(config, seed)
        self.encoder = frozen_encoder(encoder)
        self.head: PrototypeHead | None = None

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Allocate the prototypes of ``num_classes`` classes."""
        self.classes.prepare(num_classes)
        self.head = PrototypeHead(num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen embeddings of ``x``, shape (n, d)."""
        return encode_in_batches(self.encoder, x, self.config.batch_size)

    def learn(self, experience: Experience) -> None:
        """Set the prototypes of the experience's classes to their mean embedding (``replace_fc``)."""
        if self.head is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        self.classes.observe(experience, y)
        self.head.update(self.features(x), y)
        self.samples_seen += len(y)

    def prototypes(self) -> torch.Tensor:
        """Prototype matrix (num_classes, d): the mean embedding of each class (zeros if unseen)."""
        return self.head.means()

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Cosine similarity (or negative distance) to each seen class's prototype."""
        if self.head is None or self.head.sums is None:
            return torch.empty(len(x), 0)
        scores = self.head.scores(self.features(x), self.config.metric)
        return self.classes.mask(scores.float(), task_id)

    def parameter_counts(self) -> tuple[int, int]:
        """(0 trainable, stored prototype entries)."""
        return 0, 0 if self.head is None or self.head.sums is None else self.head.sums.numel()

    def state_dict(self) -> dict:
        """Prototype sums and counts, seen classes (the encoder is not stored: it is frozen and given)."""
        if self.head is None:
            return {"built": False}
        return {"built": True, "head": self.head.state(), **self.base_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            head = PrototypeHead(len(state["head"]["counts"]))
            head.load(state["head"])
            tracker, samples = self.read_base_state(state)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"checkpoint does not match {self.name}: {e}") from e
        self.head, self.classes, self.samples_seen = head, tracker, samples
