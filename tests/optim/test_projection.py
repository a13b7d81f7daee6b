"""A-GEM and GEM projections and the small QP solver (lifelong.optim.projection)."""

import itertools

import torch

from lifelong.optim.projection import agem_project, assign_flat_grad, flat_grad, gem_project, nonneg_qp


def test_agem_projection_removes_only_the_conflict():
    g_ref = torch.tensor([1.0, 0.0, 0.0])
    g = torch.tensor([-2.0, 1.0, 3.0])
    p = agem_project(g, g_ref)
    assert torch.dot(p, g_ref) >= 0
    assert torch.allclose(p, torch.tensor([0.0, 1.0, 3.0]))
    ok = torch.tensor([2.0, 1.0, 3.0])
    assert agem_project(ok, g_ref) is ok  # no conflict: unchanged
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        a, b = torch.randn(50, generator=gen), torch.randn(50, generator=gen)
        assert torch.dot(agem_project(a, b), b) >= -1e-5


def _brute_force(P, c, lower):
    """The exact minimiser by trying every active set (KKT), for small t."""
    t, best = len(P), None
    for k in range(t + 1):
        for S in itertools.combinations(range(t), k):
            v = torch.full((t,), lower, dtype=torch.float64)
            if S:
                S = list(S)
                v[S] = lower + torch.linalg.solve(P[S][:, S], -(c + P @ v)[S])
            if (v >= lower - 1e-9).all():
                f = 0.5 * v @ P @ v + c @ v
                if best is None or f < best[0]:
                    best = (f, v)
    return best[1]


def test_nonneg_qp_is_exact():
    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        t = 1 + trial % 6
        A = torch.randn(t, 12, generator=gen, dtype=torch.float64)
        P = A @ A.T + 1e-3 * torch.eye(t, dtype=torch.float64)
        c = 3 * torch.randn(t, generator=gen, dtype=torch.float64)
        lower = 0.5 if trial % 2 else 0.0
        assert torch.allclose(nonneg_qp(P, c, lower), _brute_force(P, c, lower), atol=1e-7)


def test_gem_projection_satisfies_every_constraint():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        G = torch.randn(4, 100, generator=gen)
        g = torch.randn(100, generator=gen) - 0.5 * G.sum(0)
        new = gem_project(g, G, margin=0.0, eps=1e-6)
        assert (G @ new >= -1e-3).all()
        assert (G @ g < 0).any()


def test_flat_grad_round_trip():
    a, b = torch.zeros(2, 3, requires_grad=True), torch.zeros(4, requires_grad=True)
    (a.sum() * 2 + (b * torch.arange(4.0)).sum()).backward()
    v = flat_grad([a, b])
    assert torch.equal(v, torch.tensor([2.0] * 6 + [0.0, 1.0, 2.0, 3.0]))
    assign_flat_grad([a, b], -v)
    assert torch.equal(flat_grad([a, b]), -v)
