"""Task-free (task-agnostic) streams: no task boundaries or identities given to the learner.

The setting of TAME: Task Agnostic Continual Learning using Multiple Experts (arXiv 2210.03869): one stream of
mini-batches whose distribution changes at unknown points. The stream still holds one :class:`Experience` per
segment (for the evaluation's ``R[i, j]``), but every experience has ``task_id=None``, is online with a small
batch size, and segments of one task may recur; the true boundaries live only in ``stream.params``
(``boundaries``, ``segment_tasks``). A learner for this scenario must treat consecutive ``learn`` calls as
one continuous stream.

Notes: docs/papers/tame.md
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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

    Returns a :class:`Stream` named ``"task-free"`` with one online experience per segment
    (``task_id=None``), each tested on its task's test examples, and ``params`` holding
    ``boundaries`` and ``segment_tasks`` for the evaluation only (see the module doc).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if passes < 1:
        raise ConfigError(f"passes must be >= 1, got {passes}")
    base = class_incremental(data, tasks, seed=seed, class_order=class_order)
    T = len(base)
    order = list(range(T)) if order is None else [int(t) for t in order]
    if not order:
        raise ConfigError("order must name at least one task")
    bad = sorted({t for t in order if not 0 <= t < T})
    if bad:
        raise ConfigError(f"order has task id(s) {bad} outside 0..{T - 1}; use ids of the {T} tasks")
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
                list(e.classes),
                None,
                data.num_classes,
                e.label_map,
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
    }
    return Stream("task-free", experiences, base.class_order, base.class_names, params)


def true_boundaries(stream: Stream) -> list[int]:
    """Stream positions (in training examples) where a new segment starts, for evaluation only."""
    if "boundaries" in stream.params:
        return [int(b) for b in stream.params["boundaries"]]
    return [int(b) for b in np.cumsum([len(e) for e in stream.experiences])[:-1]]


__all__ = ["task_free", "true_boundaries"]
