"""Continual-learning metrics as pure functions of the accuracy matrix.

``R`` is a ``(T, T)`` array with ``R[i, j]`` the accuracy on experience ``j``'s
test set after learning experiences ``0..i`` (fractions in [0, 1]). A partly
finished run passes the rows it has (``(k, T)`` with ``k <= T``); every function
then uses the last available row as "final". Definitions follow the continual
learning of LLMs survey (seed paper 48) and its sources:

- final average accuracy  A_T = mean_j R[T-1, j]
- average incremental accuracy = (1/T) sum_i mean_{j<=i} R[i, j]   (Rebuffi et al. 2017)
- forgetting F = mean_{j<T-1} ( max_{k in [j, T-2]} R[k, j] - R[T-1, j] )  (Chaudhry et al. 2018)
- backward transfer BWT = mean_{j<T-1} ( R[T-1, j] - R[j, j] )  (Lopez-Paz & Ranzato 2017)
- forward transfer FWT = mean_{j>=1} ( R[j-1, j] - b_j ), with b_j the accuracy on
  experience j *before any learning* (``initial``), measured by the run loop with
  the learner as it is before its first experience. Lopez-Paz & Ranzato use a
  randomly initialised model for b_j; here a learner that has seen no class scores
  no class, so b_j = 0 and FWT is the mean accuracy on each experience just before
  training on it (zero-shot transfer). In class-incremental streams unseen classes
  cannot be predicted, so FWT is 0 by construction; it is informative for domain-
  and task-incremental streams.

Metrics undefined for a matrix (forgetting with one experience) return ``None``.
"""

from __future__ import annotations

import numpy as np

from lifelong.errors import DataError

METRIC_NAMES = ("final_average_accuracy", "average_incremental_accuracy", "forgetting",
                "backward_transfer", "forward_transfer")


def _check(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] == 0 or R.shape[0] > R.shape[1]:
        raise DataError(f"accuracy matrix must have shape (k, T) with 1 <= k <= T, got {R.shape}")
    return R


def final_average_accuracy(R) -> float:
    """Mean accuracy over the experiences learned so far, after the last one: mean_{j<k} R[k-1, j]."""
    R = _check(R)
    k = R.shape[0]
    return float(R[k - 1, :k].mean())


def average_incremental_accuracy(R) -> float:
    """(1/k) sum_i mean_{j<=i} R[i, j]: the average of the accuracy curve."""
    R = _check(R)
    k = R.shape[0]
    return float(np.mean([R[i, : i + 1].mean() for i in range(k)]))


def forgetting(R) -> float | None:
    """mean_{j<k-1} (max_{i in [j, k-2]} R[i, j] - R[k-1, j]); ``None`` when k < 2."""
    R = _check(R)
    k = R.shape[0]
    if k < 2:
        return None
    best = np.array([R[j : k - 1, j].max() for j in range(k - 1)])
    return float(np.mean(best - R[k - 1, : k - 1]))


def backward_transfer(R) -> float | None:
    """mean_{j<k-1} (R[k-1, j] - R[j, j]); negative means forgetting. ``None`` when k < 2."""
    R = _check(R)
    k = R.shape[0]
    if k < 2:
        return None
    return float(np.mean(R[k - 1, : k - 1] - np.diag(R)[: k - 1]))


def forward_transfer(R, initial) -> float | None:
    """mean_{1<=j<k} (R[j-1, j] - initial[j]); ``None`` when k < 2.

    ``initial[j]`` is the accuracy on experience j before any learning.
    """
    R = _check(R)
    initial = np.asarray(initial, dtype=np.float64)
    if initial.shape != (R.shape[1],):
        raise DataError(f"initial accuracies must have shape ({R.shape[1]},), got {initial.shape}")
    k = R.shape[0]
    if k < 2:
        return None
    return float(np.mean([R[j - 1, j] - initial[j] for j in range(1, k)]))


def all_metrics(R, initial) -> dict[str, float | None]:
    """Every metric of :data:`METRIC_NAMES` in one dict."""
    return {
        "final_average_accuracy": final_average_accuracy(R),
        "average_incremental_accuracy": average_incremental_accuracy(R),
        "forgetting": forgetting(R),
        "backward_transfer": backward_transfer(R),
        "forward_transfer": forward_transfer(R, initial),
    }
