"""Reference learners run on the same prompts as a trained model, vectorised over the batch.

Every function takes :class:`Prompts` and returns the learner's prediction at every position ``i`` from the
examples ``1..i-1`` only (position 1 sees no example), in the shape of a model's output: ``[batch, n_points]``
(regression values, or Boolean scores whose sign is the label).

Regression (*What learning algorithm is in-context learning? Investigations with linear models*, arXiv
2211.15661): :func:`ols` (minimum-norm least squares), :func:`ridge` (``lam = noise**2`` is the Bayes-optimal
predictor under ``w ~ N(0, I)``), :func:`gd_steps` (k steps of gradient descent from ``w = 0``), :func:`online_sgd`
(one pass, one step per example: the official code's "SGD" learner), :func:`knn`, :func:`averaging`.
Boolean (*Understanding In-Context Learning in Transformers and LLMs by Learning to Learn Discrete Functions*, arXiv
2310.03016): :func:`elimination` (the classic learner of conjunctions; ``dual=True`` for disjunctions),
:func:`nearest_neighbour`, :func:`majority_label`, :func:`sparse_parity_vote`, :func:`sparse_parity_prior` (the
no-context Bayes rule).
:func:`spd` is the squared prediction difference of two predictors.
"""

from __future__ import annotations

import torch

from lifelong.errors import ConfigError
from lifelong.incontext.prompts import Prompts

__all__ = [
    "ols",
    "ridge",
    "gd_steps",
    "online_sgd",
    "knn",
    "averaging",
    "elimination",
    "nearest_neighbour",
    "majority_label",
    "sparse_parity_vote",
    "sparse_parity_prior",
    "spd",
    "REGRESSION_REFERENCES",
]


def _moments(prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, b, x, k)``: ``A_i = sum_{j<i} x_j x_j^T``, ``b_i = sum_{j<i} y_j x_j`` (float64), x, ``k_i = i-1``."""
    if prompts.kind != "regression" or prompts.xs.dim() != 3:
        raise ConfigError("regression references need regression prompts with vector inputs")
    x = prompts.xs.double()
    y = prompts.ys.double()
    outer = x.unsqueeze(-1) * x.unsqueeze(-2)
    a = torch.cumsum(outer, 1) - outer  # exclusive: examples before position i
    xy = x * y.unsqueeze(-1)
    b = torch.cumsum(xy, 1) - xy
    count = torch.arange(prompts.n_points, dtype=torch.float64)
    return a, b, x, count


def _predict(w: torch.Tensor, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (w * x).sum(-1).to(like.dtype)


def ols(prompts: Prompts) -> torch.Tensor:
    """Minimum-norm least squares on the prefix (``w = pinv(X^T X) X^T y``; sklearn's ``LinearRegression``)."""
    a, b, x, _ = _moments(prompts)
    w = (torch.linalg.pinv(a, hermitian=True, rtol=1e-8) @ b.unsqueeze(-1)).squeeze(-1)
    return _predict(w, x, prompts.ys)


def ridge(prompts: Prompts, lam: float) -> torch.Tensor:
    """Ridge regression ``w = (X^T X + lam I)^-1 X^T y`` on the prefix (``lam = noise**2``: the Bayes predictor)."""
    if lam <= 0:
        raise ConfigError(f"ridge needs lam > 0 (use ols for lam = 0), got {lam}")
    a, b, x, _ = _moments(prompts)
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    w = torch.linalg.solve(a + lam * eye, b.unsqueeze(-1)).squeeze(-1)
    return _predict(w, x, prompts.ys)


def gd_steps(prompts: Prompts, steps: int = 1, lr: float = 0.1, average: bool = True) -> torch.Tensor:
    """``steps`` full-batch gradient steps on the prefix's squared loss from ``w = 0`` with step size ``lr``.

    With ``average`` the loss is the prefix mean ``1/(2k) sum (w.x_j - y_j)^2`` (so one step with ``lr = 1`` is
    :func:`averaging`); otherwise the sum.
    """
    if steps < 1 or lr <= 0:
        raise ConfigError(f"gd_steps needs steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    a, b, x, count = _moments(prompts)
    scale = (lr / count.clamp_min(1)).view(1, -1, 1) if average else torch.tensor(lr, dtype=torch.float64)
    w = torch.zeros_like(b)
    for _ in range(steps):
        w = w - scale * ((a @ w.unsqueeze(-1)).squeeze(-1) - b)
    return _predict(w, x, prompts.ys)


def online_sgd(prompts: Prompts, lr: float = 0.02) -> torch.Tensor:
    """One pass of SGD over the prefix, one step per example in order (``w += lr (y_j - w.x_j) x_j``)."""
    x, y = prompts.xs.double(), prompts.ys.double()
    w = torch.zeros(prompts.batch, x.shape[-1], dtype=torch.float64)
    out = torch.zeros(prompts.batch, prompts.n_points, dtype=torch.float64)
    for i in range(prompts.n_points):  # sequential by definition; vectorised over the batch
        out[:, i] = (w * x[:, i]).sum(-1)
        w = w + lr * (y[:, i] - out[:, i]).unsqueeze(-1) * x[:, i]
    return out.to(prompts.ys.dtype)


def averaging(prompts: Prompts) -> torch.Tensor:
    """``w = mean_j y_j x_j`` over the prefix (one averaged gradient step of size 1 from 0)."""
    a, b, x, count = _moments(prompts)
    return _predict(b / count.clamp_min(1).view(1, -1, 1), x, prompts.ys)


def _prefix_mask(n: int) -> torch.Tensor:
    """``[n, n]`` bool: True where example ``j`` is before query ``i``."""
    return torch.ones(n, n, dtype=torch.bool).tril(-1)


def knn(prompts: Prompts, k: int = 3) -> torch.Tensor:
    """Mean label of the ``k`` nearest earlier examples (Euclidean; fewer when the prefix is shorter; 0 at first)."""
    x = prompts.xs.double() if prompts.xs.dim() == 3 else prompts.xs.double().unsqueeze(-1)
    n = prompts.n_points
    d = torch.cdist(x, x)
    d = d.masked_fill(~_prefix_mask(n), float("inf"))
    kk = min(k, max(n - 1, 1))
    dist, idx = d.topk(kk, dim=-1, largest=False)
    valid = torch.isfinite(dist)
    ys = torch.gather(prompts.ys.double().unsqueeze(1).expand(-1, n, -1), 2, idx)
    out = (ys * valid).sum(-1) / valid.sum(-1).clamp_min(1)
    return out.to(prompts.ys.dtype if prompts.ys.is_floating_point() else torch.float32)


def _binary(prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
    if prompts.kind != "binary":
        raise ConfigError("Boolean references need binary prompts (labels ±1)")
    return prompts.xs.float(), prompts.ys.float()


def elimination(prompts: Prompts, dual: bool = False) -> torch.Tensor:
    """The elimination algorithm for conjunctions: keep every literal that all earlier positive examples satisfy,
    predict +1 iff the query satisfies every kept literal (before any positive example: -1).

    ``dual=True`` learns a disjunction through De Morgan (elimination on the negated labels, output negated).
    Returns ``±1`` scores ``[batch, n_points]``.
    """
    x, y = _binary(prompts)
    if dual:
        y = -y
    pos = (y > 0).float().unsqueeze(-1)
    plus = pos * (x > 0).float()
    minus = pos * (x < 0).float()
    n_pos = torch.cumsum(pos, 1) - pos
    keep_plus = (torch.cumsum(plus, 1) - plus) == n_pos  # literal x_f survives: every positive had x_f = +1
    keep_minus = (torch.cumsum(minus, 1) - minus) == n_pos  # literal not-x_f survives
    ok = (~keep_plus | (x > 0)) & (~keep_minus | (x < 0))
    out = torch.where(ok.all(-1), 1.0, -1.0)
    return -out if dual else out


def nearest_neighbour(prompts: Prompts) -> torch.Tensor:
    """The label of the most similar earlier input (largest inner product, i.e. smallest Hamming distance; the
    earliest on ties); 0 (no prediction) at the first position."""
    x, y = _binary(prompts)
    n = prompts.n_points
    sim = (x @ x.transpose(1, 2)).masked_fill(~_prefix_mask(n), float("-inf"))
    idx = sim.argmax(-1)  # first maximum
    out = torch.gather(y, 1, idx)
    out[:, 0] = 0.0
    return out


def majority_label(prompts: Prompts) -> torch.Tensor:
    """The more frequent label among the earlier examples (-1 on ties and at the first position)."""
    _, y = _binary(prompts)
    s = torch.cumsum(y, 1) - y
    return torch.where(s > 0, 1.0, -1.0)


def _parity_labels(prompts: Prompts, k: int) -> torch.Tensor:
    """The label every ``k``-subset parity gives every input: ``[batch, n_points, n choose k]``."""
    from itertools import combinations

    x, _ = _binary(prompts)
    n = x.shape[-1]
    subsets = list(combinations(range(n), k))
    if len(subsets) > 20_000:
        raise ConfigError(f"{len(subsets)} hypotheses: the sparse-parity references are for small n choose k")
    h = torch.zeros(len(subsets), n)
    for row, idx in enumerate(subsets):
        h[row, list(idx)] = 1.0
    return (((x > 0).float() @ h.T) % 2) * 2 - 1


def sparse_parity_vote(prompts: Prompts, k: int = 2) -> torch.Tensor:
    """Bayes-optimal learner of ``k``-sparse parities under a uniform prior: the majority vote of every ``k``-subset
    parity consistent with the earlier examples (the version space; 0 on a tie). Shows that a sparse parity *can* be
    learned from the prompt (``n choose k`` hypotheses, about ``log2`` of that many examples)."""
    _, y = _binary(prompts)
    labels = _parity_labels(prompts, k)
    wrong = (labels != y.unsqueeze(-1)).float()
    alive = (torch.cumsum(wrong, 1) - wrong) == 0  # consistent with every earlier example
    return torch.sign((labels * alive).sum(-1))


def sparse_parity_prior(prompts: Prompts, k: int = 2) -> torch.Tensor:
    """The no-context Bayes predictor of ``k``-sparse parities: the majority vote of *every* ``k``-subset parity,
    ignoring the examples (0 on a tie). It uses the query alone, so it is the best a model that learns nothing in
    context can do. For ``k = 2`` the label is ``-x_a x_b`` and the mean over pairs is ``(n - (sum x)^2) / (n(n-1))``:
    predict +1 iff ``(sum x)^2 < n`` (``|sum x| <= 2`` for ``n = 10``: about 55.5 % accuracy on uniform inputs)."""
    return torch.sign(_parity_labels(prompts, k).sum(-1))


def spd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared prediction difference at every position: ``mean over prompts of (a - b)^2`` -> ``[n_points]``."""
    return ((a.double() - b.double()) ** 2).mean(0).float()


#: regression references by name, each ``fn(prompts) -> [batch, n_points]`` (settings bound by the caller).
REGRESSION_REFERENCES = {
    "ols": ols,
    "ridge": ridge,
    "gd": gd_steps,
    "online_sgd": online_sgd,
    "knn": knn,
    "averaging": averaging,
}
