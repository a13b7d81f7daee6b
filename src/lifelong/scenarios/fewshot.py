"""Few-shot class-incremental learning (FSCIL) streams.

The protocol of Tao et al., *Few-Shot Class-Incremental Learning* (CVPR 2020): a base session with every
training example of the base classes (CIFAR-100: 60), then ``sessions`` sessions of ``ways`` new classes with
``shots`` examples each, testing on all classes seen after every session. Each session is one
:class:`Experience` whose test split holds its own classes' test examples, so the FSCIL accuracy on all seen
classes after session i is the test-size-weighted mean of ``R[i, :i+1]`` (:func:`session_accuracies`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lifelong.data import Dataset
from lifelong.errors import ConfigError, DataError
from lifelong.scenarios.incremental import _order
from lifelong.scenarios.stream import Experience, Stream, class_order_map


def few_shot_incremental(
    data: Dataset,
    base_classes: int | None = None,
    ways: int = 5,
    shots: int = 5,
    sessions: int | None = None,
    *,
    seed: int = 0,
    class_order: Sequence[int] | None = None,
) -> Stream:
    """FSCIL stream: a full-data base session, then ``sessions`` ``ways``-way ``shots``-shot sessions.

    Args:
        data: the dataset.
        base_classes: classes of the base session (default: what is left after the
            incremental sessions, or 60% of the classes when ``sessions`` is None too).
        ways: new classes per incremental session.
        shots: training examples per new class (drawn at random with ``seed``).
        sessions: incremental sessions after the base one (default: as many as the
            remaining classes fill).
        seed: seed of the class order (``-1``: natural order 0..C-1) and of the shots.
        class_order: an explicit class order (overrides the order from ``seed``).

    Experience 0 is the base session; experience ``s`` (1..sessions) is incremental
    session ``s``. Classes beyond ``base_classes + ways * sessions`` are left out of
    the stream. Every experience tests on all test examples of its classes.
    """
    C = data.num_classes
    if ways < 1 or shots < 1:
        raise ConfigError(f"ways and shots must be >= 1, got ways={ways}, shots={shots}")
    if base_classes is None:
        base_classes = C - ways * sessions if sessions is not None else int(round(0.6 * C))
    if sessions is None:
        sessions = (C - base_classes) // ways
    if base_classes < 1 or sessions < 0:
        raise ConfigError(f"need base_classes >= 1 and sessions >= 0, got {base_classes} and {sessions}")
    used = base_classes + ways * sessions
    if used > C:
        raise ConfigError(
            f"{base_classes} base classes + {sessions} sessions x {ways} ways = {used} classes, "
            f"but {data.name} has {C}; lower base_classes, ways or sessions"
        )
    order = _order(data, seed, class_order)[:used]
    label_map = class_order_map(order, C)
    ytr, yte = label_map[data.y_train].numpy(), label_map[data.y_test].numpy()
    rng = np.random.default_rng([abs(int(seed)), 104_729])  # shots: deterministic for every seed
    names = [data.class_names[c] for c in order]
    groups = [list(range(base_classes))] + [
        list(range(base_classes + s * ways, base_classes + (s + 1) * ways)) for s in range(sessions)
    ]
    experiences = []
    for t, ids in enumerate(groups):
        if t == 0:
            tr = np.flatnonzero(np.isin(ytr, ids))
        else:
            tr = sample_shots(ytr, ids, shots, rng, names)
        te = np.flatnonzero(np.isin(yte, ids))
        experiences.append(Experience(t, data, tr, te, ids, None, used, label_map))
    params = {"base_classes": base_classes, "ways": ways, "shots": shots, "sessions": sessions, "seed": seed}
    return Stream("few-shot-incremental", experiences, order, names, params)


def sample_shots(
    labels: np.ndarray, classes: Sequence[int], shots: int, rng: np.random.Generator, names: Sequence[str]
) -> np.ndarray:
    """Sorted indices of ``shots`` examples per class of ``classes``, drawn without replacement.

    The support-set sampling of FSCIL (Tao et al., CVPR 2020) and CFSL (Kowadlo et al. 2024)
    streams: ``rng.choice`` once per class, in the order of ``classes``. ``labels`` are the
    stream labels of the training examples; ``names[c]`` names stream label ``c`` in the error
    raised when a class has fewer than ``shots`` examples.
    """
    picks = []
    for c in classes:
        ic = np.flatnonzero(labels == c)
        if len(ic) < shots:
            raise DataError(
                f"class {names[c]!r} has {len(ic)} training examples, fewer than shots={shots}; lower shots"
            )
        picks.append(rng.choice(ic, size=shots, replace=False))
    return np.sort(np.concatenate(picks))


def session_accuracies(
    accuracy_matrix: np.ndarray | Sequence[Sequence[float]], test_sizes: Sequence[int]
) -> list[float]:
    """FSCIL accuracy on all classes seen after each session, from ``R`` and per-experience test sizes.

    Session i's value is ``sum_j<=i R[i, j] * n_j / sum_j<=i n_j`` (the accuracy over the
    union of the seen sessions' test sets). ``test_sizes`` is
    ``stream.describe()["test_sizes"]`` (or ``result.stream["test_sizes"]``).
    """
    R = np.asarray(accuracy_matrix, dtype=float)
    n = np.asarray(test_sizes, dtype=float)
    if R.ndim != 2 or R.shape[1] != len(n):
        raise DataError(f"accuracy matrix {R.shape} and {len(n)} test sizes disagree")
    out = []
    for i in range(R.shape[0]):
        w = n[: i + 1]
        out.append(float((R[i, : i + 1] * w).sum() / max(w.sum(), 1.0)))
    return out


__all__ = ["few_shot_incremental", "session_accuracies"]
