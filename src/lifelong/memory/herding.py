"""Herding exemplar selection and a fixed-size exemplar memory (iCaRL; Rebuffi et al., CVPR 2017, arXiv 1611.07725).

:func:`herding_select` is iCaRL's Algorithm 4: for each class it greedily picks the example whose addition brings
the running mean of the chosen (L2-normalised) features closest to the class mean, all classes at once (one
tensor step per pick, over every candidate of every class). :class:`HerdingMemory` is iCaRL's fixed memory of
``K`` exemplars: after each experience every class keeps ``m = K // classes seen`` exemplars — the first ``m`` of
its herding order (Algorithm 5, reduce) — and the new classes get theirs by herding (Algorithm 4, construct).
:func:`exemplar_means` gives the nearest-mean-of-exemplars class means, :func:`stratified_holdout` a per-class
random hold-out (BiC's validation split of the exemplars).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lifelong.errors import CheckpointError, ConfigError


def _rank_within_class(keys: torch.Tensor) -> torch.Tensor:
    """Position of each row among the rows of its class, in row order (0 for the first row of each class)."""
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    first = torch.searchsorted(sorted_keys, sorted_keys)  # left edge of each row's class run
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(keys)) - first
    return rank


def herding_select(features: torch.Tensor, labels: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of up to ``m`` rows per class, each class's rows in herding order (iCaRL Algorithm 4).

    Features are L2-normalised; with ``mu`` the class mean of the normalised features, pick ``k``
    (1-based) is ``argmin_i || mu - (phi_i + sum of the k - 1 picked) / k ||`` over the rows not picked yet.
    A class with fewer than ``m`` rows keeps all of them. The result lists the classes in ascending label
    order; ties go to the earlier row.
    """
    if m < 0:
        raise ConfigError(f"exemplars per class must be >= 0, got {m}")
    if len(labels) == 0 or m == 0:
        return torch.empty(0, dtype=torch.long)
    f = F.normalize(features.detach().to(torch.float64).flatten(1), dim=1)
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    c, n_max, d = len(classes), int(counts.max()), f.shape[1]
    slot = _rank_within_class(inverse)
    rows = torch.full((c, n_max), -1, dtype=torch.long)
    rows[inverse, slot] = torch.arange(len(labels))
    padded = torch.zeros(c, n_max, d, dtype=torch.float64)
    padded[inverse, slot] = f
    available = rows >= 0
    mu = padded.sum(1) / counts.unsqueeze(1).to(torch.float64)  # (c, d)
    running = torch.zeros(c, d, dtype=torch.float64)
    picks = []
    for k in range(1, min(m, n_max) + 1):
        cost = (mu.unsqueeze(1) - (running.unsqueeze(1) + padded) / k).square().sum(2)
        best = cost.masked_fill(~available, float("inf")).argmin(1)  # (c,)
        live = available.gather(1, best.unsqueeze(1)).squeeze(1)  # classes with rows left
        picks.append(torch.where(live, rows.gather(1, best.unsqueeze(1)).squeeze(1), -1))
        running += padded[torch.arange(c), best] * live.unsqueeze(1)
        available[torch.arange(c), best] = False
    chosen = torch.stack(picks, 1).flatten()  # class-major: each class's picks in order
    return chosen[chosen >= 0]


def exemplar_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """iCaRL's class means: the mean of each class's L2-normalised features, renormalised; and which classes have one.

    Returns ``(means (num_classes, d) float64, present (num_classes,) bool)``; absent classes have zero rows.
    """
    f = F.normalize(features.detach().to(torch.float64).flatten(1), dim=1)
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64).index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=num_classes)
    return F.normalize(sums, dim=1), counts > 0


def stratified_holdout(labels: torch.Tensor, per_class: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask holding out ``per_class[c]`` random rows of each class ``c`` (at most all but one of them)."""
    n = len(labels)
    perm = torch.randperm(n, generator=generator)
    counts = torch.bincount(labels, minlength=len(per_class))
    quota = torch.minimum(per_class.to(torch.long), (counts - 1).clamp(min=0))
    rank = torch.empty(n, dtype=torch.long)
    rank[perm] = _rank_within_class(labels[perm])  # rank within class in a random order
    return rank < quota[labels]


class HerdingMemory:
    """Fixed memory of ``capacity`` exemplars shared equally by the classes seen (iCaRL's ``m = K / t``).

    Stored rows are grouped by class, each class's rows in herding order, so reducing a class keeps
    its most representative exemplars. Inputs and labels live in tensors; ``state_dict`` holds only
    tensors and ints.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ConfigError(f"memory capacity must be >= 1 exemplar, got {capacity}")
        self.capacity = int(capacity)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored exemplars ``(x, y)`` (empty tensors before the first update)."""
        if self.y is None:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        return self.x, self.y

    def per_class(self, classes: int) -> int:
        """Exemplars each class keeps when ``classes`` classes share the memory."""
        return self.capacity // max(classes, 1)

    def update(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        features: Callable[[torch.Tensor], torch.Tensor],
        classes_seen: int,
        batch_size: int = 1024,
    ) -> None:
        """Shrink each stored class to ``m = capacity // classes_seen``; add ``m`` herded exemplars per class of ``y``.

        ``features`` maps a batch of inputs to feature vectors (called without gradients, in chunks of
        ``batch_size``). A class of ``y`` already in memory is re-herded from its stored exemplars plus
        the new examples.
        """
        m = self.per_class(classes_seen)
        if m < 1:
            raise ConfigError(
                f"a memory of {self.capacity} exemplars cannot hold one per class for {classes_seen} classes; "
                "raise buffer_size to at least the number of classes"
            )
        new_classes = torch.unique(y)
        if self.y is not None:
            again = torch.isin(self.y, new_classes)
            x, y = torch.cat([self.x[again], x]), torch.cat([self.y[again], y])
            keep = ~again & (_rank_within_class(self.y) < m)
            old_x, old_y = self.x[keep], self.y[keep]
        else:
            old_x, old_y = x[:0], y[:0]
        with torch.no_grad():
            feats = torch.cat([features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        picked = herding_select(feats, y, m)
        self.x = torch.cat([old_x, x[picked]]).detach().clone()
        self.y = torch.cat([old_y, y[picked]]).clone()

    def state_dict(self) -> dict:
        """Capacity and the stored exemplars."""
        state: dict = {"capacity": self.capacity, "size": len(self)}
        if self.y is not None:
            state["x"], state["y"] = self.x.clone(), self.y.clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        if int(state["capacity"]) != self.capacity:
            raise CheckpointError(
                f"memory capacity {state['capacity']} in the checkpoint differs from the configured {self.capacity}"
            )
        if "y" in state:
            self.x, self.y = state["x"].clone(), state["y"].to(torch.long).clone()
        else:
            self.x = self.y = None
