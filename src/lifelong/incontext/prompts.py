"""Prompts: a batch of in-context sequences ``(x_1, y_1, ..., x_n, y_n)`` shared by every sampler, model and reference.

Each sampler of :mod:`lifelong.incontext.tasks` returns one :class:`Prompts`; a model predicts ``y_i`` at every
position ``i`` from ``x_1, y_1, ..., x_i`` (the query is the last point, or every point).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lifelong.errors import DataError

KINDS = ("regression", "binary", "classes")


@dataclass
class Prompts:
    """A batch of prompts.

    Attributes:
        xs: inputs ``[batch, n_points, d_x]`` (float), or token ids ``[batch, n_points]`` (long) for a model with
            an input vocabulary.
        ys: targets ``[batch, n_points]``: float for ``"regression"``, ``±1`` floats for ``"binary"``, long class
            ids in ``[0, num_labels)`` for ``"classes"``.
        kind: ``"regression"`` | ``"binary"`` | ``"classes"``.
        num_labels: the label count for ``"classes"``, else ``None``.
        extra: sampler-specific tags, each a tensor whose first dimension is the batch (e.g. ``"w"`` the task
            weights, ``"novel"``, ``"task_id"``, ``"loss_mask"`` a ``[batch, n_points]`` bool mask of the positions
            the default training loss reads).
    """

    xs: torch.Tensor
    ys: torch.Tensor
    kind: str
    num_labels: int | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"unknown prompt kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.xs.dim() not in (2, 3) or self.ys.dim() != 2 or self.xs.shape[:2] != self.ys.shape:
            raise DataError(
                f"prompts need xs [batch, n, d] (or token ids [batch, n]) and ys [batch, n]; "
                f"got xs {tuple(self.xs.shape)} and ys {tuple(self.ys.shape)}"
            )
        if self.kind == "classes" and (self.num_labels is None or self.num_labels < 2):
            raise DataError("prompts of kind 'classes' need num_labels >= 2")

    @property
    def batch(self) -> int:
        """Number of prompts."""
        return int(self.ys.shape[0])

    @property
    def n_points(self) -> int:
        """Examples per prompt (the query included)."""
        return int(self.ys.shape[1])

    @property
    def d_x(self) -> int:
        """Input dimension (1 for token ids)."""
        return int(self.xs.shape[2]) if self.xs.dim() == 3 else 1

    def to(self, device: torch.device | str) -> Prompts:
        """The same prompts on ``device``."""
        return Prompts(
            self.xs.to(device),
            self.ys.to(device),
            self.kind,
            self.num_labels,
            {k: v.to(device) for k, v in self.extra.items()},
        )

    def select(self, index: torch.Tensor | slice) -> Prompts:
        """The prompts at batch ``index`` (a slice, index tensor or bool mask)."""
        return Prompts(
            self.xs[index],
            self.ys[index],
            self.kind,
            self.num_labels,
            {k: v[index] for k, v in self.extra.items()},
        )

    def truncate(self, n_points: int) -> Prompts:
        """The first ``n_points`` examples of every prompt (tags with a points axis are cut too)."""
        extra = {
            k: (v[:, :n_points] if v.dim() >= 2 and v.shape[1] == self.n_points else v) for k, v in self.extra.items()
        }
        return Prompts(self.xs[:, :n_points], self.ys[:, :n_points], self.kind, self.num_labels, extra)


def cat_prompts(parts: list[Prompts]) -> Prompts:
    """Prompts of equal kind and length concatenated along the batch."""
    first = parts[0]
    keys = set(first.extra)
    if any(p.kind != first.kind or p.n_points != first.n_points or set(p.extra) != keys for p in parts):
        raise DataError("cat_prompts needs prompts of one kind, one length and the same tags")
    return Prompts(
        torch.cat([p.xs for p in parts]),
        torch.cat([p.ys for p in parts]),
        first.kind,
        first.num_labels,
        {k: torch.cat([p.extra[k] for p in parts]) for k in keys},
    )
