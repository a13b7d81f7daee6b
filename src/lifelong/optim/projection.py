"""Gradient projections of episodic-memory methods, and the small QP solver they need.

- :func:`agem_project`: A-GEM's projection (Chaudhry et al., "Efficient Lifelong Learning with A-GEM",
  ICLR 2019, arXiv 1812.00420, eq. 11): if the proposed gradient ``g`` increases the loss on the
  memory (``g . g_ref < 0``), remove its component along the reference gradient ``g_ref``.
- :func:`gem_project`: GEM's projection (Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual
  Learning", NeurIPS 2017, arXiv 1706.08840, eqs. 10-11): the gradient closest to ``g`` whose dot product
  with every earlier task's memory gradient is non-negative, solved in the dual.
- :func:`nonneg_qp`: ``min 1/2 v'Pv + c'v`` s.t. ``v >= lower``, an exact active-set (Lawson-Hanson)
  solver in float64 torch, used instead of the ``quadprog`` package of the official GEM code.
- :func:`flat_grad` / :func:`assign_flat_grad`: the gradients of a parameter list as one vector and back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def flat_grad(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``.grad`` of every parameter flattened into one vector (zeros where a gradient is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def assign_flat_grad(params: Sequence[torch.Tensor], vec: torch.Tensor) -> None:
    """Write the vector ``vec`` (as from :func:`flat_grad`) back into the parameters' ``.grad``."""
    i = 0
    for p in params:
        n = p.numel()
        g = vec[i : i + n].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        i += n


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM: ``g - (g.g_ref / g_ref.g_ref) g_ref`` when ``g.g_ref < 0``, else ``g`` unchanged.

    The result has a non-negative dot product with ``g_ref`` (zero when projected).
    """
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    denom = torch.dot(g_ref, g_ref).clamp_min(torch.finfo(g.dtype).tiny)
    return g - (dot / denom) * g_ref


def nonneg_qp(P: torch.Tensor, c: torch.Tensor, lower: float = 0.0, tol: float = 1e-10) -> torch.Tensor:
    """Minimise ``1/2 v'Pv + c'v`` subject to ``v >= lower`` for a positive definite ``P`` (t x t).

    Substituting ``u = v - lower`` gives a non-negativity constrained QP, solved exactly by the
    Lawson-Hanson active-set method: grow the free set by the coordinate with the most negative
    gradient, solve the equality-constrained problem on it, and step back to the boundary when a
    free coordinate would turn negative. Finishes in a finite number of steps (at most a few times
    ``t`` in practice; capped at ``10 t + 10``). Computed in float64.
    """
    P = P.double()
    t = P.shape[0]
    b = c.double() + P @ torch.full((t,), float(lower), dtype=torch.float64)
    u = torch.zeros(t, dtype=torch.float64)
    free = torch.zeros(t, dtype=torch.bool)
    scale = max(float(P.abs().max()), float(b.abs().max()), 1.0)
    for _ in range(10 * t + 10):
        w = -(P @ u + b)  # negative gradient
        w_bound = w.masked_fill(free, float("-inf"))
        if not bool((w_bound > tol * scale).any()):
            break
        free[int(w_bound.argmax())] = True
        while True:
            z = torch.zeros(t, dtype=torch.float64)
            idx = torch.nonzero(free).flatten()
            z[idx] = torch.linalg.solve(P[idx][:, idx], -b[idx])
            bad = free & (z <= 0)
            if not bool(bad.any()):
                u = z
                break
            ratio = u[bad] / (u[bad] - z[bad])
            alpha = float(ratio.min())
            u = u + alpha * (z - u)
            free &= u > tol * scale
            u = u.masked_fill(~free, 0.0)
            if not bool(free.any()):
                break
    return u + lower


def gem_project(g: torch.Tensor, G: torch.Tensor, margin: float = 0.5, eps: float = 1e-3) -> torch.Tensor:
    """GEM: project ``g`` (p,) given the earlier tasks' memory gradients ``G`` (t, p).

    Solves the dual ``min_v 1/2 v'(GG' + eps I)v + (Gg)'v`` s.t. ``v >= margin`` and returns
    ``g + G'v`` (the official code's ``project2cone2``, with its ``margin`` on the dual variables
    and its ``eps`` ridge). With ``margin=0`` the result ``g~`` satisfies ``G g~ >= -eps v``
    (non-negative up to the ridge). Call it only when some ``G g < 0``, as GEM does.
    """
    Gd, gd = G.double(), g.double()
    P = Gd @ Gd.T
    P = 0.5 * (P + P.T) + eps * torch.eye(len(P), dtype=torch.float64)
    v = nonneg_qp(P, Gd @ gd, lower=margin)
    return (gd + Gd.T @ v).to(g.dtype)


__all__ = ["flat_grad", "assign_flat_grad", "agem_project", "nonneg_qp", "gem_project"]
