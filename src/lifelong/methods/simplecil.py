"""SimpleCIL (Zhou, Cai, Ye, Zhan, Liu, *Revisiting Class-Incremental Learning with
Pre-Trained Models: Generalizability and Adaptivity are All You Need*, IJCV 2024,
arXiv:2303.07338; seed paper 43).

A frozen pre-trained model (PTM) embeds every input; after each experience the
classifier weight of each new class is *replaced* by its prototype, the mean
embedding of the class's training examples (official ``models/simplecil.py``,
``replace_fc``), and inputs are scored by cosine similarity to the prototypes (the
``CosineLinear`` head). There is no training at all, so nothing is forgotten and
the result does not depend on the order of the classes.

On a feature dataset (cached sentence embeddings, e.g. CLINC150 with
all-MiniLM-L6-v2) the PTM is the identity over the cached features; any frozen
encoder (a callable or ``nn.Module`` mapping an input batch to ``(batch, d)``
features) plugs in through ``encoder``. The prototype bookkeeping lives in
:class:`lifelong.heads.prototype.PrototypeHead`, shared with ``ncm`` and ``aper``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from lifelong.errors import CheckpointError, ConfigError
from lifelong.heads.prototype import METRICS, PrototypeHead, encode_in_batches
from lifelong.methods.base import ClassTracker
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register


def frozen_encoder(encoder: Callable | nn.Module | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder as a frozen feature function (default: flatten each input).

    An ``nn.Module`` is put in eval mode with its parameters frozen, as the PTM of
    SimpleCIL/APER is never updated.
    """
    if encoder is None:
        return lambda x: x.reshape(len(x), -1)
    if isinstance(encoder, nn.Module):
        encoder.eval()
        for p in encoder.parameters():
            p.requires_grad_(False)
    elif not callable(encoder):
        raise ConfigError(f"encoder must be a callable or an nn.Module, got {type(encoder).__name__}")
    return encoder


@dataclass
class SimpleCILConfig(MethodConfig):
    """SimpleCIL settings (the paper has none besides the PTM: prototypes + cosine)."""

    metric: str = hp("cosine", "score: cosine (paper, CosineLinear head) | euclidean")
    batch_size: int = hp(1024, "inputs embedded per batch (no effect on results)")

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@register("simplecil")
class SimpleCIL:
    """Prototype classifier on a frozen pre-trained embedding (SimpleCIL, seed paper 43).

    Args:
        config: :class:`SimpleCILConfig`.
        seed: unused (SimpleCIL is deterministic); kept for the common constructor.
        encoder: frozen feature function; default the identity over flattened inputs.
    """

    config_class = SimpleCILConfig

    def __init__(self, config: SimpleCILConfig, seed: int = 0, encoder: Callable | nn.Module | None = None):
        self.config = config
        self.seed = seed
        self.encoder = frozen_encoder(encoder)
        self.classes = ClassTracker()
        self.head: PrototypeHead | None = None
        self.samples_seen = 0

    def prepare(self, input_shape, num_classes: int) -> None:
        """Allocate the prototypes of ``num_classes`` classes."""
        self.classes.prepare(num_classes)
        self.head = PrototypeHead(num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen embeddings of ``x``, shape (n, d)."""
        return encode_in_batches(self.encoder, x, self.config.batch_size)

    def learn(self, experience) -> None:
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
        return {"built": True, "head": self.head.state(), "classes": self.classes.state(),
                "samples_seen": self.samples_seen}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            head = PrototypeHead(len(state["head"]["counts"]))
            head.load(state["head"])
            tracker = ClassTracker()
            tracker.load(state["classes"])
            samples = int(state["samples_seen"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"checkpoint does not match {self.name}: {e}") from e
        self.head, self.classes, self.samples_seen = head, tracker, samples
