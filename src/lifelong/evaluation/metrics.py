"""Continual-learning metrics as pure functions of the accuracy matrix.

``R[i, j]`` is the accuracy on experience ``j``'s test set after learning experiences ``0..i``; a partly
finished run passes the rows it has and the last one counts as final. Final average accuracy, average
incremental accuracy, forgetting, backward and forward transfer follow Continual Learning of Large Language
Models: A Comprehensive Survey (arXiv 2404.16789) and its sources; FWT uses the accuracy before any learning
(``initial``). Metrics undefined for a matrix (forgetting with one experience) return ``None``.

Notes: docs/papers/cl-llm-survey.md
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lifelong.errors import DataError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

METRIC_NAMES = (
    "final_average_accuracy",
    "average_incremental_accuracy",
    "forgetting",
    "backward_transfer",
    "forward_transfer",
)


def _check(R: ArrayLike) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] == 0 or R.shape[0] > R.shape[1]:
        raise DataError(f"accuracy matrix must have shape (k, T) with 1 <= k <= T, got {R.shape}")
    return R


def final_average_accuracy(R: ArrayLike) -> float:
    """Mean accuracy over the experiences learned so far, after the last one: mean_{j<k} R[k-1, j]."""
    R = _check(R)
    k = R.shape[0]
    return float(R[k - 1, :k].mean())


def average_incremental_accuracy(R: ArrayLike) -> float:
    """(1/k) sum_i mean_{j<=i} R[i, j]: the average of the accuracy curve."""
    R = _check(R)
    k = R.shape[0]
    return float(np.mean([R[i, : i + 1].mean() for i in range(k)]))


def forgetting(R: ArrayLike) -> float | None:
    """mean_{j<k-1} (max_{i in [j, k-2]} R[i, j] - R[k-1, j]); ``None`` when k < 2."""
    R = _check(R)
    k = R.shape[0]
    if k < 2:
        return None
    best = np.array([R[j : k - 1, j].max() for j in range(k - 1)])
    return float(np.mean(best - R[k - 1, : k - 1]))


def backward_transfer(R: ArrayLike) -> float | None:
    """mean_{j<k-1} (R[k-1, j] - R[j, j]); negative means forgetting. ``None`` when k < 2."""
    R = _check(R)
    k = R.shape[0]
    if k < 2:
        return None
    return float(np.mean(R[k - 1, : k - 1] - np.diag(R)[: k - 1]))


def forward_transfer(R: ArrayLike, initial: ArrayLike) -> float | None:
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


def all_metrics(R: ArrayLike, initial: ArrayLike) -> dict[str, float | None]:
    """Every metric of :data:`METRIC_NAMES` in one dict."""
    return {
        "final_average_accuracy": final_average_accuracy(R),
        "average_incremental_accuracy": average_incremental_accuracy(R),
        "forgetting": forgetting(R),
        "backward_transfer": backward_transfer(R),
        "forward_transfer": forward_transfer(R, initial),
    }


#: Name of each metric of :data:`METRIC_NAMES` in reports.
METRIC_LABELS: dict[str, str] = {
    "final_average_accuracy": "Final average accuracy",
    "average_incremental_accuracy": "Average incremental accuracy",
    "forgetting": "Forgetting",
    "backward_transfer": "Backward transfer (BWT)",
    "forward_transfer": "Forward transfer (FWT)",
}

#: Definition in words of each metric of :data:`METRIC_NAMES`, for reports: ``R`` and
#: ``initial`` as in this module's docstring, T the number of experiences. The line
#: breaks are those of report.md, which writes these after "- **<label>**: ".
METRIC_DESCRIPTIONS: dict[str, str] = {
    "final_average_accuracy": (
        "the mean over j of R[T−1, j] — accuracy on every\nexperience after learning the whole stream"
    ),
    "average_incremental_accuracy": (
        "(1/T) Σ_i mean_{j≤i} R[i, j] — the accuracy on\n"
        "the experiences seen so far, averaged over the T steps of the stream"
    ),
    "forgetting": (
        "the mean over j < T−1 of ( max_{k ∈ [j, T−2]} R[k, j] − R[T−1, j] ) —\n"
        "how far each earlier experience fell from its best accuracy (lower is better)"
    ),
    "backward_transfer": (
        "the mean over j < T−1 of ( R[T−1, j] − R[j, j] ) — how\n"
        "learning later experiences changed accuracy on earlier ones (negative = forgetting)"
    ),
    "forward_transfer": (
        "the mean over j ≥ 1 of ( R[j−1, j] − initial[j] ) — how\n"
        "much learning earlier experiences helps an experience before it is learned"
    ),
}
