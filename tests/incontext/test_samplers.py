"""Samplers: labels follow their definitions and the statistics follow the stated distributions."""

import math

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.incontext.tasks.boolean import CLASSES, BooleanFunctions
from lifelong.incontext.tasks.linear import LinearRegression
from lifelong.incontext.tasks.projection import ProjectionTasks


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_linear_regression_labels_and_noise():
    p = LinearRegression(d=5, n_points=40, noise=0.5).sample(2000, g())
    resid = p.ys - torch.einsum("bnd,bd->bn", p.xs, p.extra["w"])
    assert abs(resid.std().item() - 0.5) < 0.02
    assert abs(p.extra["w"].std().item() - 1.0) < 0.05 and abs(p.xs.std().item() - 1.0) < 0.02
    same = LinearRegression(d=5, n_points=40, noise=0.5).sample(2000, g())
    assert torch.equal(p.xs, same.xs)  # same generator state, same prompts


def _truth(cls, x, w):
    w1 = w.unsqueeze(1)
    if cls == "conjunction":
        return torch.where(((w1 == 0) | (x == w1)).all(-1), 1.0, -1.0)
    if cls in ("disjunction", "sparse_disjunction"):
        return torch.where(((w1 != 0) & (x == w1)).any(-1), 1.0, -1.0)
    if cls in ("sparse_parity", "parity"):
        return torch.where(((x > 0).float() * w.unsqueeze(1)).sum(-1) % 2 == 1, 1.0, -1.0)
    if cls == "majority":
        return torch.where((x * w.unsqueeze(1)).sum(-1) > 0.5, 1.0, -1.0)
    sat = ((w.unsqueeze(1) == 0) | (x.unsqueeze(2) == w.unsqueeze(1))).all(-1)  # [b, n, clause]: all literals hold
    anyl = ((w.unsqueeze(1) != 0) & (x.unsqueeze(2) == w.unsqueeze(1))).any(-1)
    if cls == "dnf":
        return torch.where(sat.any(-1), 1.0, -1.0)
    return torch.where(anyl.all(-1), 1.0, -1.0)  # cnf: every clause has a true literal


@pytest.mark.parametrize("cls", [c for c in CLASSES if c != "int_halfspace"])
def test_boolean_labels_follow_the_function(cls):
    p = BooleanFunctions(cls, n_dims=10, n_points=30).sample(512, g(1))
    assert set(p.xs.unique().tolist()) == {-1.0, 1.0} and set(p.ys.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(p.ys, _truth(cls, p.xs, p.extra["w"]))


def test_boolean_statistics():
    conj = BooleanFunctions("conjunction", n_dims=10, n_points=30).sample(4000, g(2))
    lits = conj.extra["w"]
    assert abs((lits == 1).float().mean().item() - 0.15) < 0.01 and abs((lits == 0).float().mean().item() - 0.7) < 0.01
    pos = (conj.ys > 0).float().mean().item()
    assert 0.3 < pos < 0.5  # forced satisfaction (p 0.3) + chance: both labels occur
    sp = BooleanFunctions("sparse_parity", n_dims=10, n_points=30).sample(4000, g(3))
    assert torch.all(sp.extra["w"].sum(-1) == 2)
    assert abs((sp.ys > 0).float().mean().item() - 0.5) < 0.02
    par = BooleanFunctions("parity", n_dims=10).sample(4000, g(4))
    assert abs(par.extra["w"].mean().item() - 0.5) < 0.02
    with pytest.raises(ConfigError):
        BooleanFunctions("xor")


def test_projection_tasks_pool_fresh_and_bias():
    gen = g(5)
    x = torch.randn(300, 8, generator=gen)
    y = torch.arange(300) % 4
    pool = ProjectionTasks(x, y, n_points=20, num_tasks=3)
    p = pool.sample(64, g(6))
    assert p.xs.shape == (64, 20, 8) and p.kind == "classes" and p.num_labels == 4
    # the same task maps the same example to the same projected input and label
    a0, perm0 = pool._task(int(p.extra["task_id"][0]))
    same = (p.extra["task_id"] == p.extra["task_id"][0]).nonzero().flatten()
    assert len(same) > 1
    assert set(p.extra["task_id"].tolist()) <= {0, 1, 2}
    fresh = ProjectionTasks(x, y, n_points=20, scale="variance")
    f = fresh.sample(4000, g(7))
    assert abs(f.xs.var().item() - 1.0) < 0.1  # standardised inputs, A ~ N(0, 1/d): unit variance out
    assert torch.all(f.extra["task_id"] == -1)
    biased = ProjectionTasks(x, y, n_points=20, bias_fraction=0.75).sample(8, g(8))
    assert biased.extra["biased"].tolist() == [True] * 6 + [False] * 2
    # biased prompts share one permutation: a class's label agrees across them
    lab = {}
    src = ProjectionTasks(x, y, n_points=20, bias_fraction=1.0)
    q = src.sample(16, g(9))
    perm = src._fixed_perm
    del lab
    assert math.isclose(q.extra["biased"].float().mean().item(), 1.0)
    assert set(q.ys.unique().tolist()) <= set(perm.tolist())


def test_projection_tasks_ways_subsets():
    """``ways=k``: labels in ``0..k-1``, each label one class (the task permutation's subset and order), pool and
    biased prompts use their own permutation's subset, labels drawn uniformly."""
    y = torch.arange(400) % 10
    x = torch.eye(10)[y]  # class c -> e_c, so a projected input is column c of the task's A
    sampler = ProjectionTasks(x, y, n_points=30, d_proj=10, ways=3, num_tasks=1, bias_fraction=0.5, standardise=False)
    p = sampler.sample(16, g(11))
    assert p.num_labels == 3 and p.ys.min() >= 0 and p.ys.max() <= 2
    a, perm = sampler._task(0)
    cls = torch.cdist(p.xs, a.T.expand(16, -1, -1)).argmin(-1)  # the class of every point
    for b in range(16):
        order = (sampler._fixed_perm if p.extra["biased"][b] else perm).argsort()[:3]
        assert torch.equal(cls[b], order[p.ys[b]])
    assert p.extra["biased"].sum() == 8 and not torch.equal(sampler._fixed_perm, perm)
    fresh = ProjectionTasks(x, y, n_points=30, ways=4, standardise=False).sample(500, g(12))
    counts = torch.bincount(fresh.ys.flatten(), minlength=4).float() / fresh.ys.numel()
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.02)
    # a fresh prompt uses at most `ways` distinct inputs here (one per class) and one input per label
    for b in range(20):
        for lab in range(4):
            pts = fresh.xs[b][fresh.ys[b] == lab]
            assert len(pts) == 0 or torch.allclose(pts, pts[:1].expand_as(pts))
    for bad in (1, 11):
        with pytest.raises(ConfigError):
            ProjectionTasks(x, y, ways=bad)
    with pytest.raises(ConfigError):
        ProjectionTasks(x[y < 9], y[y < 9], num_classes=10, ways=3)  # class 9 has no example


def test_projection_tasks_draw_without_replacement_within_a_prompt():
    """No example repeats within a prompt (every example distinct without ``ways``; distinct per class with
    ``ways``), and a sampler whose data cannot supply ``n_points`` distinct examples raises."""
    n = 60
    y = torch.arange(n) % 10
    x = torch.eye(n)  # example i -> e_i: the projected input identifies the example
    for ways, n_points in ((None, n), (None, 25), (3, 6)):
        s = ProjectionTasks(x, y, n_points=n_points, num_classes=10, ways=ways, standardise=False)
        p = s.sample(40, g(21))
        for b in range(40):
            d = torch.cdist(p.xs[b], p.xs[b]) + torch.eye(n_points) * 1e3
            assert float(d.min()) > 1e-4  # no two points of a prompt are the same example
        if ways:
            # the labels still follow the class of each example; with 6 points over 3 labels some label repeats
            assert bool((torch.stack([torch.bincount(r, minlength=3) for r in p.ys]).max(1).values > 1).any())
    with pytest.raises(ConfigError):
        ProjectionTasks(x, y, n_points=n + 1)
    with pytest.raises(ConfigError):
        ProjectionTasks(x, y, n_points=7, ways=3)  # each class has 6 examples
