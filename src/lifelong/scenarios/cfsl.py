"""Continual few-shot learning (CFSL) streams and the *instance test*.

Expanding continual few-shot learning benchmarks to include recognition of specific instances
(arXiv 2209.07863), extending the CFSL protocol of Antoniou et al. (2020). Class test (``instance=False``):
N_C classes in support sets of ``ways`` x ``shots``, one :class:`Experience` each (``repeats``: each
group of classes recurs in that many consecutive sets), scored by :func:`query_accuracy`. Instance test
(``instance=True``): each class is one image, queried under occlusion and Gaussian noise.
:func:`make_glyphs` generates as many procedural 8x8 classes as wanted.

Notes: docs/papers/cfsl-instance.md
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lifelong.data import Dataset
from lifelong.errors import ConfigError, DataError
from lifelong.scenarios.fewshot import sample_shots
from lifelong.scenarios.incremental import _order
from lifelong.scenarios.stream import Experience, Stream, class_order_map


def make_glyphs(
    *,
    num_classes: int = 100,
    per_class: int = 20,
    strokes: int = 3,
    size: int = 8,
    noise: float = 0.15,
    test_fraction: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Procedural glyph classes for CFSL (a stand-in for Omniglot; Kowadlo et al. 2024).

    Each class is a template of ``strokes`` random line segments rasterised on a
    ``size`` x ``size`` grid; each example is its template shifted by up to one pixel,
    with 10% of its ink dropped and Gaussian noise of std ``noise`` added. Shape
    ``(1, size, size)``; deterministic in ``seed``.
    """
    if num_classes < 1 or per_class < 2 or strokes < 1 or size < 4:
        raise ConfigError("make_glyphs needs num_classes >= 1, per_class >= 2, strokes >= 1 and size >= 4")
    rng = np.random.default_rng([abs(int(seed)), 7919])
    ends = rng.integers(0, size, size=(num_classes, strokes, 2, 2))  # (C, S, endpoint, yx)
    t = np.linspace(0.0, 1.0, 2 * size)[None, None, :, None]
    pts = np.rint(ends[:, :, :1] * (1 - t) + ends[:, :, 1:] * t).astype(np.int64)  # (C, S, T, 2)
    templates = np.zeros((num_classes, size, size), dtype=np.float32)
    cls = np.broadcast_to(np.arange(num_classes)[:, None, None], pts.shape[:3])
    templates[cls.ravel(), pts[..., 0].ravel(), pts[..., 1].ravel()] = 1.0
    y = np.repeat(np.arange(num_classes), per_class)
    x = templates[y].copy()
    shifts = rng.integers(-1, 2, size=(len(y), 2))
    for dy in (-1, 0, 1):  # 9 vectorised rolls, not one per example
        for dx in (-1, 0, 1):
            m = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            x[m] = np.roll(x[m], (dy, dx), axis=(1, 2))
    x *= rng.random(x.shape) >= 0.1
    x += rng.normal(0.0, noise, size=x.shape).astype(np.float32)
    return Dataset.from_arrays(
        "glyphs",
        x[:, None].astype(np.float32),
        y,
        [f"glyph{c}" for c in range(num_classes)],
        test_fraction=test_fraction,
        seed=seed,
    )


def corrupt(x: torch.Tensor, occlusion: float, noise: float, generator: torch.Generator) -> torch.Tensor:
    """The instance test's transformation: zero a random ``occlusion`` fraction of each item's pixels
    (exactly ``round(occlusion * pixels)`` per item) and add N(0, ``noise``^2) (Kowadlo et al. 2024)."""
    if not 0.0 <= occlusion < 1.0 or noise < 0:
        raise ConfigError(f"need 0 <= occlusion < 1 and noise >= 0, got occlusion={occlusion}, noise={noise}")
    flat = x.reshape(len(x), -1).clone()
    k = int(round(occlusion * flat.shape[1]))
    if k:
        ranks = torch.rand(flat.shape, generator=generator).argsort(1)[:, :k]
        flat.scatter_(1, ranks, 0.0)
    if noise > 0:
        flat += noise * torch.randn(flat.shape, generator=generator)
    return flat.reshape(x.shape)


def instance_dataset(
    data: Dataset, instances: int, queries: int = 10, occlusion: float = 0.25, noise: float = 0.1, seed: int = 0
) -> Dataset:
    """The instance-test dataset: ``instances`` training images of ``data``, one class each.

    Train split = each clean instance once; test split = ``queries`` corrupted copies
    of each (:func:`corrupt`). The instances are drawn at random with ``seed``.
    """
    if instances < 1 or queries < 1:
        raise ConfigError(f"need instances >= 1 and queries >= 1, got {instances} and {queries}")
    if instances > len(data.y_train):
        raise DataError(
            f"{data.name} has {len(data.y_train)} training images, fewer than instances={instances}; lower classes"
        )
    rng = np.random.default_rng([abs(int(seed)), 31337])
    pick = torch.as_tensor(np.sort(rng.choice(len(data.y_train), size=instances, replace=False)))
    xs = data.x_train.index_select(0, pick)
    g = torch.Generator().manual_seed(abs(int(seed)) * 7 + 1)
    y_test = torch.arange(instances).repeat_interleave(queries)
    x_test = corrupt(xs[y_test], occlusion, noise, g)
    names = [f"{data.name}#{int(i)}" for i in pick]
    return Dataset(
        f"{data.name}-instances",
        xs.clone(),
        torch.arange(instances),
        x_test,
        y_test,
        names,
        meta={"source": data.name, "occlusion": occlusion, "noise": noise, "queries": queries},
    )


def cfsl(
    data: Dataset,
    classes: int = 10,
    ways: int = 2,
    shots: int = 5,
    *,
    instance: bool = False,
    queries: int = 10,
    occlusion: float = 0.25,
    noise: float = 0.1,
    seed: int = 0,
    class_order: Sequence[int] | None = None,
    repeats: int = 1,
) -> Stream:
    """CFSL stream (Kowadlo et al. 2024): ``classes`` classes in support sets of ``ways`` x ``shots``.

    Args:
        data: the dataset (for the instance test, the source of the instances).
        classes: N_C, the total number of classes (instances) in the stream.
        ways: classes per support set (the last set may hold fewer).
        shots: examples per class in its support set (class test; the instance test has 1).
        instance: build the instance test instead of the class test.
        queries, occlusion, noise: instance test only: corrupted query copies per
            instance, fraction of pixels zeroed, Gaussian noise std.
        seed: seed of the class order (``-1``: natural order), the shots and the instances.
        class_order: an explicit class order (class test).
        repeats: the class-repeat knob (the official ``class_change_interval``): each group of ``ways``
            classes is presented in this many consecutive support sets, each with fresh shots (class test;
            drawn without replacement across the repeats) or the same clean image again (instance test).
            Each class's test examples are split evenly across its repeats, so every test example is
            scored once and :func:`query_accuracy` stays the accuracy over all classes.
    """
    if classes < 1 or ways < 1 or shots < 1 or repeats < 1:
        raise ConfigError(f"classes, ways, shots and repeats must be >= 1, got {classes}, {ways}, {shots}, {repeats}")
    if instance:
        data = instance_dataset(data, classes, queries, occlusion, noise, seed)
        shots = 1
        class_order = list(range(classes))
    if classes > data.num_classes:
        raise ConfigError(
            f"classes={classes} but {data.name} has {data.num_classes}; lower classes or use "
            "lifelong.scenarios.cfsl.make_glyphs(num_classes=...)"
        )
    order = _order(data, seed, class_order)[:classes]
    label_map = class_order_map(order, data.num_classes)
    ytr, yte = label_map[data.y_train].numpy(), label_map[data.y_test].numpy()
    rng = np.random.default_rng([abs(int(seed)), 104_723])
    names = [data.class_names[c] for c in order]
    experiences = []
    for start in range(0, classes, ways):
        ids = list(range(start, min(start + ways, classes)))
        if repeats == 1:
            trs = [sample_shots(ytr, ids, shots, rng, names)]
            tes = [np.flatnonzero(np.isin(yte, ids))]
        else:
            trs, tes = _repeated_sets(ytr, yte, ids, shots, repeats, rng, names, same_shots=instance)
        for tr, te in zip(trs, tes):
            experiences.append(Experience(len(experiences), data, tr, te, ids, None, classes, label_map))
    params = {"classes": classes, "ways": ways, "shots": shots, "instance": bool(instance), "seed": seed}
    if repeats > 1:
        params["repeats"] = repeats
    if instance:
        params.update(queries=queries, occlusion=occlusion, noise=noise)
    return Stream("cfsl", experiences, order, names, params)


def _repeated_sets(
    ytr: np.ndarray,
    yte: np.ndarray,
    ids: list[int],
    shots: int,
    repeats: int,
    rng: np.random.Generator,
    names: Sequence[str],
    same_shots: bool,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Train and test indices of ``repeats`` support sets of the classes ``ids`` (see :func:`cfsl`)."""
    picks = sample_shots(ytr, ids, shots if same_shots else shots * repeats, rng, names)
    trs, tes = [[] for _ in range(repeats)], [[] for _ in range(repeats)]
    for c in ids:
        pc = picks[ytr[picks] == c]
        tc = np.flatnonzero(yte == c)
        if len(tc) < repeats:
            raise DataError(
                f"class {names[c]!r} has {len(tc)} test examples, fewer than repeats={repeats}; lower repeats"
            )
        for r in range(repeats):
            trs[r].append(pc if same_shots else pc[r * shots : (r + 1) * shots])
            tes[r].append(tc[r::repeats])
    return [np.sort(np.concatenate(t)) for t in trs], [np.sort(np.concatenate(t)) for t in tes]


def query_accuracy(accuracy_matrix: np.ndarray | Sequence[Sequence[float]], test_sizes: Sequence[int]) -> float:
    """CFSL query-set accuracy over all classes seen: the test-size-weighted mean of ``R``'s last row."""
    R = np.asarray(accuracy_matrix, dtype=float)
    n = np.asarray(test_sizes, dtype=float)
    if R.ndim != 2 or R.shape[1] != len(n):
        raise DataError(f"accuracy matrix {R.shape} and {len(n)} test sizes disagree")
    return float((R[-1] * n).sum() / max(n.sum(), 1.0))


__all__ = ["cfsl", "make_glyphs", "corrupt", "instance_dataset", "query_accuracy"]
