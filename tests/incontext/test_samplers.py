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
