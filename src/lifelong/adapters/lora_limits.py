"""The LoRA gradient of an attention head and its chained low-rank approximation.

Computational Limits of Low-Rank Adaptation (LoRA) for Transformer-Based Models (arXiv 2406.03136): with
small entries of ``S = Q K^T`` the LoRA gradient of one attention head can be computed in almost linear time
in the sequence length by carrying a low-rank ``exp(S)`` through every term. :func:`exact_gradients` gives
the closed form (``O(L^2 d)``), :func:`lowrank_gradients` the chained approximation with a degree-``g``
Taylor feature map (linear in ``L``). :func:`bound_entries` puts the paper's bound ``Gamma`` on the entries of
``Q = X W_Q*`` and ``K = X W_K*`` (every row of ``X`` gets the same norm, so the bound holds for any ``L`` and
the entries' distribution does not depend on ``L``); :func:`scale_to_bound` (the first protocol) rescales
inputs so that ``max |S|`` over the ``L^2`` entries hits a target instead.

Notes: docs/papers/lora-limits.md
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from lifelong.errors import ConfigError

TARGETS = ("q", "k", "v")


@dataclass
class AttentionLoRAProblem:
    """One attention head with LoRA factors, inputs and a regression target.

    Attributes:
        x: inputs ``(L, d)``.
        weights: pre-trained ``{"q", "k", "v"}`` -> ``(d, d)`` (used as ``X @ W``).
        lora: adapted targets -> ``(B (d, r), A (r, d))``, so ``W* = W + scale * B @ A``.
        y: target ``(L, d)`` of the attention output.
        scale: the LoRA factor ``alpha / r``.
    """

    x: torch.Tensor
    weights: dict
    lora: dict
    y: torch.Tensor
    scale: float = 1.0

    def effective(self, t: str) -> torch.Tensor:
        """``W_t* = W_t + scale * B_t A_t`` (or ``W_t`` when ``t`` is not adapted)."""
        w = self.weights[t]
        if t in self.lora:
            b, a = self.lora[t]
            w = w + self.scale * (b @ a)
        return w

    def qkv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Q, K, V) = (X W_Q*, X W_K*, X W_V*)``."""
        return tuple(self.x @ self.effective(t) for t in TARGETS)  # type: ignore[return-value]

    def max_score(self) -> float:
        """``max |S_ij|`` with ``S = Q K^T`` (computed in row blocks)."""
        q, k, _ = self.qkv()
        return max(float((q[s : s + 1024] @ k.T).abs().max()) for s in range(0, len(q), 1024))


def make_problem(
    length: int,
    dim: int,
    rank: int = 4,
    targets: Sequence[str] = ("q", "v"),
    *,
    alpha: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> AttentionLoRAProblem:
    """A random problem: ``W ~ N(0, 1/d)``, LoRA factors both non-zero, ``X ~ N(0, 1)``, ``Y ~ N(0, 1/d)``.

    The weights and LoRA factors are drawn before ``X`` and ``Y``, so they do not depend on ``length``.
    """
    if length < 1 or dim < 1 or rank < 1 or rank > dim:
        raise ConfigError(f"need length >= 1, dim >= 1 and 1 <= rank <= dim; got {length}, {dim}, {rank}")
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ConfigError(f"targets must be a non-empty subset of {TARGETS}, got {targets!r}")
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype) * std

    # weights first: the same seed gives the same head (weights and LoRA factors) at every length
    weights = {t: randn(dim, dim, std=1 / math.sqrt(dim)) for t in TARGETS}
    lora = {t: (randn(dim, rank, std=0.5 / math.sqrt(rank)), randn(rank, dim, std=1 / math.sqrt(dim))) for t in targets}
    x = randn(length, dim)
    y = randn(length, dim, std=1 / math.sqrt(dim))
    return AttentionLoRAProblem(x, weights, lora, y, (alpha if alpha is not None else rank) / rank)


def scale_to_bound(problem: AttentionLoRAProblem, bound: float) -> AttentionLoRAProblem:
    """The problem with ``X`` (and ``Y``) multiplied by ``c`` so that ``max |S| = bound`` (``S`` scales as ``c^2``)."""
    if not bound > 0:
        raise ConfigError(f"bound must be > 0, got {bound}")
    c = math.sqrt(bound / problem.max_score())
    return replace(problem, x=problem.x * c, y=problem.y * c)


def entry_bound(problem: AttentionLoRAProblem) -> float:
    """A bound ``Gamma`` on every entry of ``Q`` and ``K``: ``max_i ||x_i|| * max_j ||column j of W_Q*, W_K*||``.

    By Cauchy-Schwarz ``|Q_ij| = |x_i . w_j| <= ||x_i|| ||w_j||``; the bound is reached only by a
    row aligned with the largest column, so it holds whatever the number of rows.
    """
    cols = max(float(problem.effective(t).norm(dim=0).max()) for t in ("q", "k"))
    return float(problem.x.norm(dim=1).max()) * cols


def bound_entries(problem: AttentionLoRAProblem, gamma: float) -> AttentionLoRAProblem:
    """The problem with every row of ``X`` rescaled to one norm ``rho`` so that :func:`entry_bound` is ``gamma``.

    ``||X W_Q*||_max, ||X W_K*||_max <= gamma`` as in the paper's bounded-entries assumption, for any
    ``L``; with random row directions the entries' distribution does not change with ``L`` (unlike a
    bound on ``max |S|``, the largest of ``L^2`` entries). ``Y`` is scaled by ``rho / sqrt(d)``.
    """
    if not (math.isfinite(gamma) and gamma > 0):
        raise ConfigError(f"gamma must be a positive number, got {gamma}")
    norms = problem.x.norm(dim=1, keepdim=True)
    if not bool((norms > 0).all()):
        raise ConfigError("every row of X must be non-zero to bound the entries by rescaling rows")
    cols = max(float(problem.effective(t).norm(dim=0).max()) for t in ("q", "k"))
    rho = gamma / cols
    return replace(problem, x=problem.x / norms * rho, y=problem.y * rho / math.sqrt(problem.x.shape[1]))


def max_entries(problem: AttentionLoRAProblem) -> tuple[float, float]:
    """Measured ``(max |Q_ij|, max |K_ij|)``."""
    q, k, _ = problem.qkv()
    return float(q.abs().max()), float(k.abs().max())


def loss_autograd(problem: AttentionLoRAProblem) -> dict:
    """Reference gradients by autograd through the dense softmax (for tests): ``{t: (dB, dA)}``."""
    leaves = {
        t: (b.detach().clone().requires_grad_(True), a.detach().clone().requires_grad_(True))
        for t, (b, a) in problem.lora.items()
    }
    p = replace(problem, lora=leaves)
    q, k, v = p.qkv()
    o = torch.softmax(q @ k.T, dim=1) @ v
    loss = 0.5 * (o - p.y).pow(2).sum()
    loss.backward()
    return {t: (b.grad, a.grad) for t, (b, a) in leaves.items()}


def _factor_grads(problem: AttentionLoRAProblem, dq: torch.Tensor, dk: torch.Tensor | None, dv: torch.Tensor) -> dict:
    """Chain ``dQ, dK, dV`` to ``dW* = X^T d.`` and on to ``dB = s dW* A^T``, ``dA = s B^T dW*``."""
    dws = {"q": dq, "k": dk, "v": dv}
    out = {}
    for t, (b, a) in problem.lora.items():
        dw = problem.x.T @ dws[t]
        out[t] = (problem.scale * dw @ a.T, problem.scale * b.T @ dw)
    return out


def exact_gradients(problem: AttentionLoRAProblem, block: int = 512) -> dict:
    """Exact LoRA-factor gradients ``{t: (dB, dA)}`` in ``O(L^2 d)`` time, processed in blocks of query rows.

    ``F = softmax(Q K^T)``, ``C = F V - Y``, ``dV = F^T C``,
    ``dS = F o (C V^T - r 1^T)`` with ``r = rowsum(F o C V^T)``, ``dQ = dS K``, ``dK = dS^T Q``.
    """
    q, k, v = problem.qkv()
    need_k = "k" in problem.lora
    dq = torch.empty_like(q)
    dk = torch.zeros_like(k) if need_k else None
    dv = torch.zeros_like(v)
    for s in range(0, len(q), block):
        qb = q[s : s + block]
        f = torch.softmax(qb @ k.T, dim=1)  # (b, L)
        o = f @ v
        c = o - problem.y[s : s + block]
        dv += f.T @ c
        r = (o * c).sum(1, keepdim=True)
        ds = f * (c @ v.T - r)
        dq[s : s + block] = ds @ k
        if need_k:
            dk += ds.T @ qb
    return _factor_grads(problem, dq, dk, dv)


def taylor_feature_count(dim: int, degree: int) -> int:
    """Rank of the degree-``g`` Taylor kernel in ``d`` dimensions: ``C(d + g, g)``."""
    return math.comb(dim + degree, degree)


def taylor_features(z: torch.Tensor, degree: int) -> torch.Tensor:
    """``phi(z)`` with ``phi(q) . phi(k) = sum_{j <= g} (q . k)^j / j!`` (Taylor polynomial of ``exp``).

    Features are the monomials ``z^alpha / sqrt(alpha!)`` for multi-indices ``|alpha| <= g``,
    built degree by degree (each monomial extended by a column index >= its last one), so
    there is one column per multiset: ``C(d + g, g)`` columns. Loops run over degrees
    and dimensions only.
    """
    if degree < 0:
        raise ConfigError(f"degree must be >= 0, got {degree}")
    n, d = z.shape
    feats = [torch.ones(n, 1, dtype=z.dtype)]
    cur = torch.ones(n, 1, dtype=z.dtype)  # monomials of the current degree (without the 1/sqrt(alpha!) factor)
    last = torch.full((1,), -1, dtype=torch.long)  # last index of each monomial
    run = torch.zeros(1, dtype=torch.long)  # multiplicity of that last index
    fact = torch.ones(1, dtype=z.dtype)  # alpha! of each monomial
    for _ in range(degree):
        cols, lasts, runs, facts = [], [], [], []
        for j in range(d):
            keep = last <= j
            same = last[keep] == j
            new_run = torch.where(same, run[keep] + 1, torch.ones_like(run[keep]))
            cols.append(cur[:, keep] * z[:, j : j + 1])
            lasts.append(torch.full((int(keep.sum()),), j, dtype=torch.long))
            runs.append(new_run)
            facts.append(fact[keep] * new_run.to(z.dtype))
        cur, last, run, fact = torch.cat(cols, 1), torch.cat(lasts), torch.cat(runs), torch.cat(facts)
        feats.append(cur / fact.sqrt())
    return torch.cat(feats, 1)


def _kron_rows(u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Row-wise Kronecker product: row ``i`` is ``outer(u_i, c_i).flatten()`` -> ``(n, k * d)``."""
    return (u.unsqueeze(2) * c.unsqueeze(1)).reshape(len(u), -1)


def lowrank_gradients(problem: AttentionLoRAProblem, degree: int = 4, block: int = 256) -> dict:
    """LoRA-factor gradients by the chained low-rank approximation, ``O(L C(d+g,g) d^2)`` time.

    No ``L x L`` matrix is formed; memory is ``O(block C(d+g,g) d + C(d+g,g) d^2)``.
    """
    q, k, v = problem.qkv()
    y = problem.y
    u, w = taylor_features(q, degree), taylor_features(k, degree)  # (L, m)
    den = u @ w.sum(0)  # row sums of U W^T
    if not bool((den > 0).all()):
        raise ArithmeticError("the Taylor kernel's row sums are not positive; use an even degree")
    o = (u @ (w.T @ v)) / den[:, None]
    c = o - y
    cd = c / den[:, None]
    dv = w @ (u.T @ cd)
    r = (o * c).sum(1, keepdim=True)
    n, m, d = len(q), u.shape[1], q.shape[1]
    # dQ = [F o (C V^T)] K - r o (F K), F = D~^-1 U W^T
    t = torch.zeros(m * d, d, dtype=q.dtype)  # (W (x) V)^T K
    for s in range(0, n, block):
        t += _kron_rows(w[s : s + block], v[s : s + block]).T @ k[s : s + block]
    dq = torch.empty_like(q)
    for s in range(0, n, block):
        dq[s : s + block] = _kron_rows(u[s : s + block], cd[s : s + block]) @ t
    dq -= (r / den[:, None]) * (u @ (w.T @ k))
    dk = None
    if "k" in problem.lora:
        # dK = [F o (C V^T)]^T Q - F^T (r o Q)
        t2 = torch.zeros(m * d, d, dtype=q.dtype)  # (U (x) C)^T (Q / den)
        for s in range(0, n, block):
            t2 += _kron_rows(u[s : s + block], c[s : s + block]).T @ (q[s : s + block] / den[s : s + block, None])
        dk = torch.empty_like(k)
        for s in range(0, n, block):
            dk[s : s + block] = _kron_rows(w[s : s + block], v[s : s + block]) @ t2
        dk -= w @ (u.T @ (r * q / den[:, None]))
    return _factor_grads(problem, dq, dk, dv)


def relative_error(approx: dict, exact: dict) -> float:
    """``||g~ - g||_F / ||g||_F`` over all LoRA factors together."""
    num = sum(float((approx[t][i] - exact[t][i]).pow(2).sum()) for t in exact for i in (0, 1))
    den = sum(float(exact[t][i].pow(2).sum()) for t in exact for i in (0, 1))
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def degree_needed(
    problem: AttentionLoRAProblem, tol: float = 1e-2, max_degree: int = 30, exact: dict | None = None
) -> int | None:
    """Smallest even Taylor degree whose approximate gradient is within ``tol`` relative error (``None`` if none)."""
    exact = exact_gradients(problem) if exact is None else exact
    for g in range(2, max_degree + 1, 2):
        if relative_error(lowrank_gradients(problem, g), exact) < tol:
            return g
    return None


__all__ = [
    "AttentionLoRAProblem",
    "make_problem",
    "scale_to_bound",
    "entry_bound",
    "bound_entries",
    "max_entries",
    "loss_autograd",
    "exact_gradients",
    "lowrank_gradients",
    "taylor_features",
    "taylor_feature_count",
    "relative_error",
    "degree_needed",
]
