"""Hierarchical label expansion streams: coarse classes first, the fine classes below them later.

The setting of Online Continual Learning on Hierarchical Label Expansion (arXiv 2308.14374), depth 2:
experience 0 labels examples with coarse classes (CLINC150: the 10 domains), later experiences label other
examples with the fine classes below them (``expand="per-coarse"`` or ``"all"``). Coarse and fine classes
share one label space (stream ids ``0..K-1`` coarse, then fine). ``level_task_ids`` picks per-level or strict
flat evaluation, ``batch_size`` makes the stream online. ``stream.params`` holds the hierarchy;
:func:`class_levels` and :func:`class_parents` read it.

Notes: docs/papers/hle.md
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lifelong.data import Dataset
from lifelong.errors import ConfigError, DataError
from lifelong.scenarios.stream import Experience, Stream

EXPAND_MODES = ("per-coarse", "all")


def _coarse_names(data: Dataset, K: int, names: Sequence[str] | None) -> list[str]:
    if names is not None:
        names = [str(n) for n in names]
    else:
        names = data.meta.get("domain_names") or data.meta.get("coarse_names")
    if names is None or len(names) != K:
        return [f"coarse{k}" for k in range(K)]
    return list(names)


def hierarchical(
    data: Dataset,
    coarse_fraction: float = 0.4,
    *,
    expand: str = "per-coarse",
    seed: int = 0,
    coarse_labels: Sequence[int] | None = None,
    coarse_names: Sequence[str] | None = None,
    level_task_ids: bool = True,
    batch_size: int | None = None,
) -> Stream:
    """Coarse labels first, fine labels later (HLE, Lee et al. 2023); see the module doc.

    Args:
        data: a dataset with ``coarse_labels`` (or pass ``coarse_labels``).
        coarse_fraction: share of each fine class's training examples that is
            labelled with its coarse class in experience 0 (in (0, 1)).
        expand: ``"per-coarse"`` (one fine experience per coarse class) or ``"all"``.
        seed: seed of the example split, the expansion order (``-1``: natural) and
            the online order.
        coarse_labels: class id -> coarse class id (default ``data.coarse_labels``).
        coarse_names: names of the coarse classes (default ``meta["domain_names"]``).
        level_task_ids: give each experience its level as ``task_id`` (per-level
            evaluation); ``False`` hides it (flat evaluation over both levels).
        batch_size: online mini-batch size, or ``None`` for offline experiences.
    """
    if expand not in EXPAND_MODES:
        raise ConfigError(f"expand must be one of {EXPAND_MODES}, got {expand!r}")
    if not 0.0 < coarse_fraction < 1.0:
        raise ConfigError(f"coarse_fraction must lie in (0, 1), got {coarse_fraction}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1 or None, got {batch_size}")
    parent = coarse_labels if coarse_labels is not None else data.coarse_labels
    if parent is None:
        raise ConfigError(
            f"{data.name} has no coarse_labels; pass coarse_labels= (class id -> coarse id) "
            "to build a hierarchical stream"
        )
    parent = np.asarray(list(parent), dtype=np.int64)
    C = data.num_classes
    if parent.shape != (C,) or parent.min() < 0:
        raise ConfigError(
            f"coarse_labels must give one non-negative coarse id per class ({C}), got {len(parent)} values"
        )
    K = int(parent.max()) + 1
    if len(np.unique(parent)) != K:
        raise ConfigError(
            f"coarse ids must cover 0..{K - 1} without gaps; missing {sorted(set(range(K)) - set(parent.tolist()))}"
        )

    rng = np.random.default_rng([abs(int(seed)), 7_919])
    coarse_order = list(range(K)) if seed < 0 else [int(k) for k in rng.permutation(K)]
    if expand == "per-coarse":
        groups = [[int(c) for c in np.flatnonzero(parent == k)] for k in coarse_order]
    else:
        groups = [[int(c) for k in coarse_order for c in np.flatnonzero(parent == k)]]
    fine_order = [c for g in groups for c in g]

    # The label-space view: same inputs, labels K + c, classes coarse then fine.
    view = Dataset(
        data.name,
        data.x_train,
        data.y_train + K,
        data.x_test,
        data.y_test + K,
        _coarse_names(data, K, coarse_names) + list(data.class_names),
        coarse_labels=list(range(K)) + parent.tolist(),
        domains_train=data.domains_train,
        domains_test=data.domains_test,
        meta=data.meta,
    )
    fine_id = torch.full((K + C,), -1, dtype=torch.long)
    fine_id[K + torch.as_tensor(fine_order)] = torch.arange(K, K + C)
    coarse_id = torch.full((K + C,), -1, dtype=torch.long)
    coarse_id[:K] = torch.arange(K)
    coarse_id[K:] = torch.as_tensor(parent)

    ytr, yte = data.y_train.numpy(), data.y_test.numpy()
    to_coarse, to_fine = [], {}
    for c in range(C):
        idx = rng.permutation(np.flatnonzero(ytr == c))
        if len(idx) < 2:
            raise DataError(
                f"class {data.class_names[c]!r} has {len(idx)} training example(s); the "
                "hierarchical stream needs at least 2 (one per level)"
            )
        n_coarse = min(max(int(round(coarse_fraction * len(idx))), 1), len(idx) - 1)
        to_coarse.append(idx[:n_coarse])
        to_fine[c] = idx[n_coarse:]

    def order(idx: np.ndarray) -> np.ndarray:
        return rng.permutation(idx) if batch_size is not None else np.sort(idx)

    online = batch_size is not None
    experiences = [
        Experience(
            0,
            view,
            order(np.concatenate(to_coarse)),
            np.arange(len(yte)),
            list(range(K)),
            0 if level_task_ids else None,
            K + C,
            coarse_id,
            online=online,
            batch_size=batch_size,
        )
    ]
    for t, g in enumerate(groups, start=1):
        tr = order(np.concatenate([to_fine[c] for c in g]))
        te = np.flatnonzero(np.isin(yte, g))
        ids = sorted(int(fine_id[K + c]) for c in g)
        experiences.append(
            Experience(
                t,
                view,
                tr,
                te,
                ids,
                1 if level_task_ids else None,
                K + C,
                fine_id,
                online=online,
                batch_size=batch_size,
            )
        )
    class_order = list(range(K)) + [K + c for c in fine_order]
    levels = [0] * K + [1] * C
    parents = [-1] * K + [int(parent[c]) for c in fine_order]
    params = {
        "coarse_fraction": coarse_fraction,
        "expand": expand,
        "seed": seed,
        "level_task_ids": level_task_ids,
        "batch_size": batch_size,
        "num_coarse": K,
        "levels": levels,
        "parents": parents,
        "experience_levels": [0] + [1] * len(groups),
    }
    return Stream("hierarchical", experiences, class_order, [view.class_names[c] for c in class_order], params)


def class_levels(stream: Stream) -> list[int]:
    """Level of each stream class (0 coarse, 1 fine) of a :func:`hierarchical` stream."""
    if "levels" not in stream.params:
        raise ConfigError(f"a {stream.scenario} stream has no class levels; build it with hierarchical()")
    return list(stream.params["levels"])


def class_parents(stream: Stream) -> list[int]:
    """Coarse stream id of each stream class (-1 for coarse classes) of a :func:`hierarchical` stream."""
    if "parents" not in stream.params:
        raise ConfigError(f"a {stream.scenario} stream has no class parents; build it with hierarchical()")
    return list(stream.params["parents"])


__all__ = ["hierarchical", "class_levels", "class_parents"]
