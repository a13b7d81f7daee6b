"""A frozen random projection and a ridge-regression head from accumulated Gram statistics (RanPAC).

McDonnell, Gong, Parvaneh, Abbasnejad & van den Hengel, "RanPAC: Random Projections and Pre-trained
Models for Continual Learning", NeurIPS 2023 (arXiv 2307.02251). Features ``f`` (n, d) are projected by a
fixed Gaussian matrix and a ReLU, ``h = relu(f W_rand)`` (n, M); the head keeps ``G = sum h^T h`` (M, M) and
``C = sum h^T y`` (M, classes) over every experience and predicts with ``W = (G + lambda I)^-1 C``, so its
solution equals ridge regression on all data seen, whatever the order. :func:`choose_ridge` is the
official code's ``optimise_ridge_parameter``: fit on the first 80 % of an experience's features, pick the
lambda in ``10^-8 .. 10^8`` with the smallest mean squared error on the other 20 %.

Statistics are float64 (sums over experiences equal one pass up to rounding); plain tensors, stored in
safetensors checkpoints by :meth:`GramRidgeHead.state`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.errors import CheckpointError, ConfigError, DataError

#: lambda grid of the official code: 10^-8 .. 10^8
RIDGE_GRID = tuple(10.0**k for k in range(-8, 9))


def random_projection(dim: int, m: int, seed: int) -> torch.Tensor:
    """The frozen (dim, m) projection with N(0, 1) entries (official ``torch.randn``), drawn from ``seed``."""
    if dim < 1 or m < 1:
        raise ConfigError(f"a random projection needs dim >= 1 and m >= 1, got {dim} and {m}")
    return torch.randn(dim, m, generator=torch.Generator().manual_seed(int(seed)))


def project(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``relu(features @ weight)`` in float64: the randomly projected, non-linear features ``h``."""
    return F.relu(features.double() @ weight.double())


def ridge_validation_losses(
    h: torch.Tensor, targets: torch.Tensor, ridges: tuple[float, ...] = RIDGE_GRID, fit_fraction: float = 0.8
) -> list[float]:
    """Validation MSE of ridge regression for each lambda: fit on the first ``fit_fraction`` rows, score the rest.

    Solved through one thin SVD of the fitting rows, ``W(lambda) = V diag(s / (s^2 + lambda)) U^T Y``,
    which equals ``(H^T H + lambda I)^-1 H^T Y`` for every lambda at the cost of one decomposition.
    """
    n = len(h)
    cut = int(n * fit_fraction)
    if cut < 1 or cut >= n:
        raise DataError(f"need at least 2 examples to choose the ridge (fit and validation rows), got {n}")
    hf, hv = h[:cut].double(), h[cut:].double()
    yf, yv = targets[:cut].double(), targets[cut:].double()
    u, s, vh = torch.linalg.svd(hf, full_matrices=False)
    a = hv @ vh.T  # (n_val, r)
    b = u.T @ yf  # (r, C)
    out = []
    for lam in ridges:
        pred = (a * (s / (s.pow(2) + lam))) @ b
        out.append(float((pred - yv).pow(2).mean()))
    return out


def choose_ridge(
    h: torch.Tensor, targets: torch.Tensor, ridges: tuple[float, ...] = RIDGE_GRID, fit_fraction: float = 0.8
) -> float:
    """The lambda of ``ridges`` with the smallest validation MSE (:func:`ridge_validation_losses`); ties go first."""
    losses = ridge_validation_losses(h, targets, ridges, fit_fraction)
    return float(ridges[min(range(len(ridges)), key=lambda i: (losses[i], i))])


class GramRidgeHead:
    """Accumulated ``G = sum h^T h`` and ``C = sum h^T onehot(y)``; weights ``(G + lambda I)^-1 C``.

    Args:
        dim: projected feature dimension M.
        num_classes: number of classes of the stream.
    """

    def __init__(self, dim: int, num_classes: int):
        if dim < 1 or num_classes < 1:
            raise ConfigError(f"a ridge head needs dim >= 1 and num_classes >= 1, got {dim} and {num_classes}")
        self.dim, self.num_classes = int(dim), int(num_classes)
        self.gram = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        self.cross = torch.zeros(self.dim, self.num_classes, dtype=torch.float64)
        self.weight: torch.Tensor | None = None  # (M, C) float64 after solve

    def update(self, h: torch.Tensor, labels: torch.Tensor) -> None:
        """Add projected features ``h`` (n, M) of classes ``labels`` (n,) to G and C."""
        if h.ndim != 2 or h.shape[1] != self.dim or len(labels) != len(h):
            raise DataError(f"expected h of shape (n, {self.dim}) and n labels, got {tuple(h.shape)}, {len(labels)}")
        h = h.double()
        self.gram += h.T @ h
        self.cross += h.T @ F.one_hot(labels, self.num_classes).double()

    def solve(self, ridge: float) -> torch.Tensor:
        """Set and return ``W = (G + ridge I)^-1 C`` (Cholesky; ``ridge`` > 0)."""
        if not ridge > 0:
            raise ConfigError(f"ridge must be > 0, got {ridge}")
        a = self.gram + ridge * torch.eye(self.dim, dtype=torch.float64)
        factor = torch.linalg.cholesky(a)
        self.weight = torch.cholesky_solve(self.cross, factor)
        return self.weight

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """``h @ W`` (n, C) in float64 (zeros before the first solve)."""
        if self.weight is None:
            return torch.zeros(len(h), self.num_classes, dtype=torch.float64)
        return h.double() @ self.weight

    def state(self) -> dict:
        """G, C and W (tensors)."""
        out = {"gram": self.gram.clone(), "cross": self.cross.clone()}
        if self.weight is not None:
            out["weight"] = self.weight.clone()
        return out

    def load(self, state: dict) -> None:
        """Restore :meth:`state`; a shape mismatch raises :class:`CheckpointError`."""
        gram, cross = state["gram"], state["cross"]
        if tuple(gram.shape) != (self.dim, self.dim) or tuple(cross.shape) != (self.dim, self.num_classes):
            raise CheckpointError(
                f"ridge head state has G {tuple(gram.shape)} and C {tuple(cross.shape)}, expected "
                f"({self.dim}, {self.dim}) and ({self.dim}, {self.num_classes})"
            )
        self.gram, self.cross = gram.double().clone(), cross.double().clone()
        self.weight = state["weight"].double().clone() if "weight" in state else None
