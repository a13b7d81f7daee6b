"""RanPAC: a frozen random projection of pre-trained features and a Gram-matrix ridge classifier.

McDonnell, Gong, Parvaneh, Abbasnejad & van den Hengel, "RanPAC: Random Projections and Pre-trained
Models for Continual Learning", NeurIPS 2023 (arXiv 2307.02251); official code ``RanPAC/RanPAC``
(``RanPAC.py``: ``replace_fc``, ``optimise_ridge_parameter``). Frozen features ``f`` are projected by a
fixed N(0, 1) matrix with a ReLU, ``h = relu(f W_rand)``; after each experience the head adds ``h^T h`` to
``G`` and ``h^T y`` to ``C`` and predicts with ``W = (G + lambda I)^-1 C``. The ridge ``lambda`` is chosen at
each experience as the official code does (fit on 80 % of the experience's projected features, the lambda
in 10^-8 .. 10^8 with the least squared error on the other 20 %), or fixed with ``ridge``. The blocks live
in :mod:`lifelong.heads.ridge`.

Departures: ``projection_dim`` defaults to 2000 (the paper's M = 10000 needs a 10000 x 10000 solve per
experience: set it for a full-size run); the 80/20 split is a seeded random one (the official code cuts
the data-loader's order). Phase 1 of the paper (parameter-efficient adaptation of the encoder on the first
experience) is not done: the encoder stays frozen, as the paper's "no PETL" ablation rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.encoders.frozen import frozen_encoder
from lifelong.errors import CheckpointError, ConfigError
from lifelong.heads.prototype import encode_in_batches
from lifelong.heads.ridge import RIDGE_GRID, GramRidgeHead, choose_ridge, project, random_projection
from lifelong.methods.base import LearnerBase
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience

PROJECTION_SEED_OFFSET = 0x5A9C  # the projection gets its own random stream, derived from the learner's seed


@dataclass
class RanPACConfig(MethodConfig):
    """RanPAC settings (official: M = 10000, lambda chosen per experience on an 80/20 split)."""

    projection_dim: int = hp(
        2000, "random projection size M (paper 10000; 2000 keeps the solve fast on a CPU); 0 = no projection"
    )
    ridge: float = hp(0.0, "ridge lambda; 0 = choose it at each experience (official rule: 80/20 split, 1e-8..1e8)")
    val_fraction: float = hp(0.2, "share of each experience's data that scores the lambda grid (official 0.2)")
    batch_size: int = hp(1024, "inputs embedded per batch (no effect on results)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.projection_dim < 0:
            raise ConfigError(f"projection_dim must be >= 0 (0: no projection), got {self.projection_dim}")
        if self.ridge < 0:
            raise ConfigError(f"ridge must be > 0, or 0 to choose it per experience; got {self.ridge}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@register("ranpac")
class RanPAC(LearnerBase):
    """Random projection + ReLU of frozen features, ridge classifier from accumulated Gram statistics.

    Args:
        config: :class:`RanPACConfig`.
        seed: seeds the random projection and the 80/20 split.
        encoder: frozen feature function; default the identity over flattened inputs.
    """

    config_class = RanPACConfig

    def __init__(self, config: RanPACConfig, seed: int = 0, encoder: Callable | nn.Module | None = None):
        super().__init__(config, seed)
        self.encoder = frozen_encoder(encoder)
        self.generator = torch.Generator().manual_seed(seed)
        self.projection: torch.Tensor | None = None
        self.input_dim = 0
        self.head: GramRidgeHead | None = None
        self.ridges: list[float] = []  # the lambda used after each experience

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Draw the projection for the encoder's features of ``input_shape`` inputs; allocate the head."""
        input_dim = int(encode_in_batches(self.encoder, torch.zeros(1, *input_shape), 1).shape[1])
        self._build(input_dim, num_classes)

    def _build(self, input_dim: int, num_classes: int) -> None:
        self.classes.prepare(num_classes)
        m = self.config.projection_dim
        if m:
            self.projection = random_projection(input_dim, m, PROJECTION_SEED_OFFSET + self.seed)
        else:  # the official M = 0: ridge regression on the features themselves (the paper's "no RP" ablation)
            self.projection = torch.eye(input_dim)
        self.input_dim = input_dim
        self.head = GramRidgeHead(m or input_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(f(x) W_rand)`` (n, M), float64 (the features themselves when ``projection_dim`` is 0)."""
        f = encode_in_batches(self.encoder, x, self.config.batch_size)
        return project(f, self.projection) if self.config.projection_dim else f.double()

    def learn(self, experience: Experience) -> None:
        """Add the experience to G and C, choose lambda (unless fixed), solve for the weights."""
        x, y = experience.train_tensors()
        if self.head is None:
            self.prepare(tuple(experience.input_shape), experience.num_classes)
        self.classes.observe(experience, y)
        h = self.features(x)
        self.head.update(h, y)
        ridge = self.config.ridge
        if ridge == 0:
            order = torch.randperm(len(y), generator=self.generator)
            onehot = F.one_hot(y[order], self.head.num_classes).double()
            ridge = choose_ridge(h[order], onehot, RIDGE_GRID, 1.0 - self.config.val_fraction)
        self.head.solve(ridge)
        self.ridges.append(float(ridge))
        self.samples_seen += len(y)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Ridge scores ``relu(f W_rand) W`` over the seen classes."""
        if self.head is None or self.head.weight is None:
            return torch.empty(len(x), 0)
        return self.classes.mask(self.head.scores(self.features(x)).float(), task_id)

    def parameter_counts(self) -> tuple[int, int]:
        """(0 trainable by gradient, projection + ridge weight entries)."""
        if self.head is None:
            return 0, 0
        rp = self.projection.numel() if self.config.projection_dim else 0
        return 0, rp + self.head.dim * self.head.num_classes

    def state_dict(self) -> dict:
        """Head statistics, chosen ridges, the split generator and seen classes (the projection is redrawn)."""
        if self.head is None:
            return {"built": False}
        return {
            "built": True,
            "input_dim": int(self.input_dim),
            "num_classes": self.head.num_classes,
            "head": self.head.state(),
            "ridges": list(self.ridges),
            "generator": self.generator.get_state(),
            **self.base_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            fresh = type(self)(self.config, self.seed, self.encoder)
            fresh._build(int(state["input_dim"]), int(state["num_classes"]))
            fresh.head.load(state["head"])
            fresh.ridges = [float(r) for r in state["ridges"]]
            fresh.generator.set_state(state["generator"])
            fresh.classes, fresh.samples_seen = self.read_base_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint does not match {self.name} with this config: {e}") from e
        self.__dict__.update(fresh.__dict__)
