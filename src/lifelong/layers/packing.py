"""Packing tasks into one network: every weight belongs to at most one task (PackNet's masks).

Mallya & Lazebnik, "PackNet: Adding Multiple Tasks to a Single Network by Iterative Pruning", CVPR 2018
(arXiv 1711.05769). :class:`PackedMLP` is an MLP whose hidden-layer weight matrices carry an ``owner``
buffer of the same shape: 0 = free, ``k >= 1`` = the k-th packed task. Task ``k`` is computed with the
weights owned by tasks ``1..k`` only (:meth:`PackedMLP.forward` with ``upto=k``), so weights added later
never change its outputs. :func:`prune_free_by_magnitude` gives the largest-magnitude free weights of a
layer to a task and frees (zeroes) the rest, per layer, as the official ``prune.py`` does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError


def prune_free_by_magnitude(weight: torch.Tensor, owner: torch.Tensor, task: int, fraction: float) -> int:
    """Give the ``1 - fraction`` largest-magnitude free entries (``owner == 0``) of ``weight`` to ``task``.

    The other free entries stay free and are set to 0 in place. Returns the number of entries kept.
    Ties at the threshold are broken by position (``torch.topk``), so exactly
    ``round((1 - fraction) * free)`` entries are kept.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"the pruned fraction must lie in [0, 1), got {fraction}")
    if task < 1:
        raise ValueError(f"task owner ids start at 1, got {task}")
    free = (owner == 0).flatten()
    n_free = int(free.sum())
    keep = int(round((1.0 - fraction) * n_free))
    with torch.no_grad():
        score = weight.detach().abs().flatten().masked_fill(~free, -1.0)
        chosen = torch.topk(score, keep).indices if keep else torch.empty(0, dtype=torch.long)
        flat_owner = owner.view(-1)
        flat_owner[chosen] = task
        released = free.clone()
        released[chosen] = False
        weight.view(-1)[released] = 0.0
    return keep


class PackedMLP(nn.Module):
    """An MLP ``in -> hidden... -> classes`` whose hidden-layer weights each belong to one packed task.

    The output layer is the per-class classifier (one row per class, the paper's task-specific
    classifiers): it is never pruned, and a class's row is trained only with its task. Buffers
    ``owner{i}`` (int16, the shape of layer ``i``'s weight) for every layer but the last record which
    task owns each weight; they are saved with the model.
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], num_classes: int):
        super().__init__()
        if not hidden:
            raise ConfigError("PackNet needs at least one hidden layer to pack tasks into (hidden=())")
        dims = [in_dim, *hidden, num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        for i, layer in enumerate(self.layers[:-1]):
            self.register_buffer(f"owner{i}", torch.zeros(layer.weight.shape, dtype=torch.int16))

    @property
    def packed(self) -> list[nn.Linear]:
        """The hidden layers (the ones whose weights are owned by tasks)."""
        return list(self.layers[:-1])

    def owner(self, i: int) -> torch.Tensor:
        """Owner ids of hidden layer ``i``'s weights (0 = free)."""
        return getattr(self, f"owner{i}")

    def forward(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Logits of all classes; with ``upto=k`` only the weights of tasks ``1..k`` are used (free ones too
        when ``upto`` is None, as while training the newest task)."""
        h = x.reshape(len(x), -1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            w = layer.weight
            if i < last and upto is not None:
                o = self.owner(i)
                w = w * ((o > 0) & (o <= upto)).to(w.dtype)
            h = F.linear(h, w, layer.bias)
            if i < last:
                h = F.relu(h)
        return h

    def owned_fraction(self) -> dict[int, float]:
        """Share of the hidden weights owned by each task id (0 = free)."""
        counts: dict[int, int] = {}
        total = 0
        for i in range(len(self.layers) - 1):
            ids, n = torch.unique(self.owner(i), return_counts=True)
            for k, c in zip(ids.tolist(), n.tolist()):
                counts[int(k)] = counts.get(int(k), 0) + int(c)
            total += self.owner(i).numel()
        return {k: c / total for k, c in sorted(counts.items())}


def flat_input_dim(input_shape: tuple[int, ...]) -> int:
    """Number of input features of a flattened ``input_shape``."""
    return int(math.prod(input_shape))
