"""Task-free (task-agnostic) streams: no task boundaries or identities given to the learner.

The setting of TAME: Task Agnostic Continual Learning using Multiple Experts (arXiv 2210.03869): one stream of
mini-batches whose distribution changes at unknown points. The stream still holds one :class:`Experience` per
segment (for the evaluation's ``R[i, j]``), but every experience has ``task_id=None``, is online with a small
batch size, and segments of one task may recur; the true boundaries live only in ``stream.params``
(``boundaries``, ``segment_tasks``). A learner for this scenario must treat consecutive ``learn`` calls as
one continuous stream.

``labels="global"`` (default) labels every example with its stream-wide class id; ``labels="local"`` is
the official TAME code's split-MNIST setup (its ``scenario='domain'``): each task's classes are relabelled
``0..k-1`` so every task shares one k-way label space, and a task change shows only in the inputs.

Notes: docs/papers/tame.md
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lifelong.data import Dataset
from lifelong.errors import ConfigError
from lifelong.scenarios.incremental import class_incremental
from lifelong.scenarios.stream import Experience, Stream


def task_free(
    data: Dataset,
    tasks: int = 5,
    *,
    batch_size: int = 10,
    passes: int = 1,
    order: Sequence[int] | None = None,
    seed: int = 0,
    class_order: Sequence[int] | None = None,
    labels: str = "global",
) -> Stream:
    """A stream of class-group tasks with hidden boundaries (TAME's task-agnostic setting).

    Args:
        data: the dataset.
        tasks: number of distinct tasks; the classes are split evenly among them as in
            :func:`class_incremental` (same ``seed`` / ``class_order`` semantics).
        batch_size: the online mini-batch size the learner must use.
        passes: how many consecutive shuffled passes over a task's training examples one
            segment streams (the official TAME code streams each task for 10 epochs).
        order: the sequence of task ids forming the segments, e.g. ``[0, 1, 2, 3, 4, 0]``
            for a recurring first task; default ``0..tasks-1``. A recurring task streams
            all its training examples again, in a new shuffle.
        seed: class-order seed (``-1``: natural order) and seed of the within-segment shuffles.
        class_order: an explicit class order (overrides ``seed`` for the classes).
        labels: ``"global"``: each example keeps its stream-wide class id (``num_classes`` = all
            classes); ``"local"``: the official TAME code's task-local labels, each task's classes
            relabelled ``0..k-1`` in class order (``num_classes`` = k, the largest task's class
            count; ``class_order`` / ``class_names`` are then the k local labels, and the
            original classes of each task are in ``params["task_classes"]``).

    Returns a :class:`Stream` named ``"task-free"`` with one online experience per segment
    (``task_id=None``), each tested on its task's test examples, and ``params`` holding
    ``boundaries`` and ``segment_tasks`` for the evaluation only (see the module doc).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if passes < 1:
        raise ConfigError(f"passes must be >= 1, got {passes}")
    if labels not in ("global", "local"):
        raise ConfigError(f"labels must be 'global' or 'local', got {labels!r}")
    base = class_incremental(data, tasks, seed=seed, class_order=class_order)
    T = len(base)
    order = list(range(T)) if order is None else [int(t) for t in order]
    if not order:
        raise ConfigError("order must name at least one task")
    bad = sorted({t for t in order if not 0 <= t < T})
    if bad:
        raise ConfigError(f"order has task id(s) {bad} outside 0..{T - 1}; use ids of the {T} tasks")
    task_classes = [[int(base.class_order[c]) for c in e.classes] for e in base]
    num_classes, class_names = data.num_classes, base.class_names
    if labels == "local":  # original label -> its position in its task's class group
        num_classes = max(len(g) for g in task_classes)
        local = torch.full((data.num_classes,), -1, dtype=torch.long)
        for g in task_classes:
            local[torch.as_tensor(g, dtype=torch.long)] = torch.arange(len(g))
        class_names = [f"local {i}" for i in range(num_classes)]
    rng = np.random.default_rng(seed + 104729)
    experiences, boundaries, position = [], [], 0
    for s, t in enumerate(order):
        e = base.experiences[t]
        tr = np.concatenate([rng.permutation(e.train_idx) for _ in range(passes)]).astype(np.int64)
        if s > 0:
            boundaries.append(position)
        position += len(tr)
        experiences.append(
            Experience(
                s,
                data,
                tr,
                e.test_idx,
                list(e.classes) if labels == "global" else list(range(len(task_classes[t]))),
                None,
                num_classes,
                e.label_map if labels == "global" else local,
                online=True,
                batch_size=batch_size,
            )
        )
    params = {
        "tasks": T,
        "batch_size": batch_size,
        "passes": passes,
        "order": order,
        "seed": seed,
        "boundaries": boundaries,
        "segment_tasks": order,
        "stream_length": position,
        "labels": labels,
        "task_classes": task_classes,
    }
    class_order_ = list(base.class_order) if labels == "global" else list(range(num_classes))
    return Stream("task-free", experiences, class_order_, list(class_names), params)


def true_boundaries(stream: Stream) -> list[int]:
    """Stream positions (in training examples) where a new segment starts, for evaluation only."""
    if "boundaries" in stream.params:
        return [int(b) for b in stream.params["boundaries"]]
    return [int(b) for b in np.cumsum([len(e) for e in stream.experiences])[:-1]]


__all__ = ["task_free", "true_boundaries"]
