"""Nearest class mean (NCM; Mensink et al. 2013, as used by iCaRL, Rebuffi et al. 2017).

Keeps a running sum and count of feature vectors per class and predicts the class
whose mean is nearest (Euclidean, or cosine on L2-normalised features). It never
forgets what it has stored and needs no gradient steps. Features here are the
flattened inputs; later encoders (a frozen pre-trained model) plug in through
``feature_fn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from lifelong.errors import CheckpointError, ConfigError
from lifelong.heads.prototype import PrototypeHead
from lifelong.methods.base import ClassTracker
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register


@dataclass
class NCMConfig(MethodConfig):
    """NCM settings."""

    metric: str = hp("euclidean", "distance: euclidean | cosine")
    batch_size: int = hp(1024, "examples featurised per batch")

    def validate(self) -> None:
        if self.metric not in ("euclidean", "cosine"):
            raise ConfigError(f"metric must be 'euclidean' or 'cosine', got {self.metric!r}")


@register("ncm")
class NCM:
    """Nearest-class-mean classifier over (by default) the flattened inputs."""

    config_class = NCMConfig

    def __init__(self, config: NCMConfig, seed: int = 0, feature_fn: Callable | None = None):
        self.config = config
        self.seed = seed
        self.feature_fn = feature_fn or (lambda x: x.reshape(len(x), -1))
        self.classes = ClassTracker()
        self.head: PrototypeHead | None = None
        self.samples_seen = 0

    def prepare(self, input_shape, num_classes: int) -> None:
        """Allocate per-class sums for ``num_classes`` classes."""
        self.classes.prepare(num_classes)
        self.head = PrototypeHead(num_classes)

    @torch.inference_mode()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        bs = self.config.batch_size
        f = torch.cat([self.feature_fn(x[s:s + bs]) for s in range(0, len(x), bs)]).to(torch.float64)
        return F.normalize(f, dim=1) if self.config.metric == "cosine" else f

    def learn(self, experience) -> None:
        """Add the experience's training features to the class sums."""
        if self.head is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        self.classes.observe(experience, y)
        self.head.update(self._features(x), y)
        self.samples_seen += len(y)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Negative distance to each seen class mean."""
        if self.head is None or self.head.sums is None:
            return torch.empty(len(x), 0)
        scores = self.head.scores(self._features(x), self.config.metric)
        return self.classes.mask(scores.float(), task_id)

    def parameter_counts(self) -> tuple[int, int]:
        """(0 trainable, stored prototype entries)."""
        return 0, 0 if self.head is None or self.head.sums is None else self.head.sums.numel()

    def state_dict(self) -> dict:
        """Class sums, counts and seen classes."""
        if self.head is None:
            return {"built": False}
        return {"built": True, **self.head.state(), "classes": self.classes.state(),
                "samples_seen": self.samples_seen}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        if not state.get("built", False):
            return
        try:
            head = PrototypeHead(len(state["counts"]))
            head.load(state)
            tracker = ClassTracker()
            tracker.load(state["classes"])
        except (KeyError, ValueError, AttributeError, TypeError) as e:
            raise CheckpointError(f"checkpoint does not match ncm: {e}") from e
        self.head, self.classes = head, tracker
        self.samples_seen = int(state["samples_seen"])
