"""Scenario functions: dataset -> Stream.

Class-, task- and domain-incremental streams (van de Ven & Tolias, 2019, "Three
scenarios for continual learning") and online streams with optional blurry task
boundaries (Bang et al. 2021, "Rainbow Memory"; Koh et al. 2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lifelong.data import Dataset
from lifelong.errors import ConfigError, DataError
from lifelong.scenarios.stream import Experience, Stream, class_order_map
from lifelong.scenarios.transforms import Permutation, Rotation


def _split_classes(num_classes: int, tasks: int | None, increments: Sequence[int] | None) -> list[int]:
    if increments is not None:
        increments = [int(i) for i in increments]
        if any(i <= 0 for i in increments) or sum(increments) != num_classes:
            raise ConfigError(f"increments {increments} must be positive and sum to the {num_classes} classes")
        return increments
    if tasks is None or tasks < 1:
        raise ConfigError(f"tasks must be >= 1, got {tasks}")
    if tasks > num_classes:
        raise ConfigError(f"cannot split {num_classes} classes into {tasks} tasks; use at most {num_classes} tasks")
    base, extra = divmod(num_classes, tasks)
    return [base + (1 if t < extra else 0) for t in range(tasks)]


def _order(data: Dataset, seed: int, class_order: Sequence[int] | None) -> list[int]:
    if class_order is not None:
        order = [int(c) for c in class_order]
        if sorted(order) != list(range(data.num_classes)):
            raise ConfigError(f"class_order must be a permutation of 0..{data.num_classes - 1}")
        return order
    if seed < 0:
        return list(range(data.num_classes))
    return [int(c) for c in np.random.default_rng(seed).permutation(data.num_classes)]


def class_incremental(
    data: Dataset,
    tasks: int | None = 5,
    *,
    increments: Sequence[int] | None = None,
    seed: int = 0,
    class_order: Sequence[int] | None = None,
    task_labels: bool = False,
) -> Stream:
    """Split the classes into disjoint groups learned one after another.

    Args:
        data: the dataset.
        tasks: number of experiences (classes divided as evenly as possible).
        increments: explicit class counts per experience (overrides ``tasks``).
        seed: class-order seed; ``-1`` keeps the natural order 0..C-1.
        class_order: an explicit class order (overrides ``seed``).
        task_labels: give each experience its ``task_id`` (task-incremental).
    """
    sizes = _split_classes(data.num_classes, tasks, increments)
    order = _order(data, seed, class_order)
    label_map = class_order_map(order, data.num_classes)
    ytr, yte = label_map[data.y_train].numpy(), label_map[data.y_test].numpy()
    experiences, start = [], 0
    for t, size in enumerate(sizes):
        ids = list(range(start, start + size))
        start += size
        tr = np.flatnonzero(np.isin(ytr, ids))
        te = np.flatnonzero(np.isin(yte, ids))
        experiences.append(Experience(t, data, tr, te, ids, t if task_labels else None, data.num_classes, label_map))
    name = "task-incremental" if task_labels else "class-incremental"
    params = {"tasks": len(sizes), "increments": sizes, "seed": seed, "task_labels": task_labels}
    return Stream(name, experiences, order, [data.class_names[c] for c in order], params)


def task_incremental(
    data: Dataset,
    tasks: int | None = 5,
    *,
    increments: Sequence[int] | None = None,
    seed: int = 0,
    class_order: Sequence[int] | None = None,
) -> Stream:
    """Class-incremental splits with the task identity given at training and test time."""
    return class_incremental(data, tasks, increments=increments, seed=seed, class_order=class_order, task_labels=True)


def domain_incremental(
    data: Dataset,
    tasks: int = 5,
    *,
    kind: str = "permuted",
    seed: int = 0,
    max_degrees: float = 90.0,
    task_labels: bool = False,
    share: str = "full",
) -> Stream:
    """Same classes in every experience, inputs transformed differently per experience.

    ``kind="permuted"``: experience 0 sees the original inputs, each later one a
    fixed random pixel permutation. ``kind="rotated"``: experience t rotates images by
    ``t * max_degrees / (tasks - 1)`` degrees. ``share="full"`` (default) gives every
    experience the whole training split under its own transform, as permuted MNIST in
    most libraries (Avalanche, Mammoth), so results compare with theirs;
    ``share="disjoint"`` gives each experience a disjoint share of the training
    examples: a fixed total budget, so the cost does not grow with ``tasks`` but each
    task gets fewer examples (100 tasks on digits: 14 each, and every method sits at
    chance). Every experience tests on the whole test split, transformed.
    """
    if tasks < 1:
        raise ConfigError(f"tasks must be >= 1, got {tasks}")
    if share not in ("full", "disjoint"):
        raise ConfigError(f"share must be 'full' or 'disjoint', got {share!r}")
    if kind not in ("permuted", "rotated"):
        raise ConfigError(f"domain-incremental kind must be 'permuted' or 'rotated', got {kind!r}")
    if kind == "rotated" and len(data.input_shape) != 3:
        raise ConfigError(f"rotated streams need image data (C, H, W); {data.name} has shape {data.input_shape}")
    rng = np.random.default_rng(seed)
    if share == "disjoint":
        shares = np.array_split(rng.permutation(len(data.y_train)), tasks)
    else:
        shares = [np.arange(len(data.y_train))] * tasks
    label_map = torch.arange(data.num_classes)
    n_features = int(np.prod(data.input_shape))
    all_classes = list(range(data.num_classes))
    experiences = []
    for t in range(tasks):
        if kind == "permuted":
            transform = None if t == 0 else Permutation(n_features, seed * 1000 + t)
        else:
            transform = Rotation(t * max_degrees / max(tasks - 1, 1))
        if len(shares[t]) == 0:
            raise DataError(f"experience {t} gets no training examples; use fewer than {tasks} tasks")
        experiences.append(
            Experience(
                t,
                data,
                np.sort(shares[t]),
                np.arange(len(data.y_test)),
                all_classes,
                t if task_labels else None,
                data.num_classes,
                label_map,
                transform,
            )
        )
    params = {"tasks": tasks, "kind": kind, "seed": seed, "max_degrees": max_degrees, "share": share}
    return Stream("domain-incremental", experiences, all_classes, list(data.class_names), params)


def online(
    data: Dataset,
    tasks: int = 5,
    *,
    batch_size: int = 10,
    blurry: float = 0.0,
    seed: int = 0,
    class_order: Sequence[int] | None = None,
) -> Stream:
    """Online class-incremental stream: one pass, mini-batches of ``batch_size``.

    ``blurry`` in [0, 1) is the fraction of each experience's examples drawn from
    other experiences' classes (blurry task boundaries): that share of every class's
    training examples is moved to a randomly chosen other experience. Training
    order inside an experience is shuffled once by ``seed`` and then fixed.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= blurry < 1.0:
        raise ConfigError(f"blurry must lie in [0, 1), got {blurry}")
    base = class_incremental(data, tasks, seed=seed, class_order=class_order)
    rng = np.random.default_rng(seed + 7919)
    T = len(base)
    buckets = [list(e.train_idx) for e in base.experiences]
    if blurry > 0 and T > 1:
        moved = [[] for _ in range(T)]
        for t, e in enumerate(base.experiences):
            idx = rng.permutation(e.train_idx)
            n_move = int(round(blurry * len(idx)))
            keep, move = idx[n_move:], idx[:n_move]
            buckets[t] = list(keep)
            targets = rng.choice([s for s in range(T) if s != t], size=len(move))
            for s in range(T):
                moved[s].extend(move[targets == s])
        for s in range(T):
            buckets[s].extend(moved[s])
    ytr = base.experiences[0].label_map[data.y_train].numpy()
    experiences = []
    for t, e in enumerate(base.experiences):
        tr = rng.permutation(np.asarray(buckets[t], dtype=np.int64))
        classes = sorted(int(c) for c in np.unique(ytr[tr]))
        experiences.append(
            Experience(
                t,
                data,
                tr,
                e.test_idx,
                classes,
                None,
                data.num_classes,
                e.label_map,
                online=True,
                batch_size=batch_size,
            )
        )
    params = {"tasks": T, "batch_size": batch_size, "blurry": blurry, "seed": seed}
    return Stream("online", experiences, base.class_order, base.class_names, params)
