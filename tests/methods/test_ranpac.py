"""RanPAC (arXiv 2307.02251): random projection + ReLU, ridge head from accumulated Gram statistics."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.heads.ridge import RIDGE_GRID, GramRidgeHead, choose_ridge, project, ridge_validation_losses
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental


def _ridge(h, y, lam):
    h = h.double()
    return torch.linalg.solve(h.T @ h + lam * torch.eye(h.shape[1], dtype=torch.float64), h.T @ y.double())


def test_incremental_gram_statistics_equal_one_ridge_regression():
    g = torch.Generator().manual_seed(0)
    h = torch.rand(60, 12, generator=g)
    y = torch.randint(0, 5, (60,), generator=g)
    head = GramRidgeHead(12, 5)
    for part in (slice(0, 10), slice(10, 45), slice(45, 60)):  # three experiences
        head.update(h[part], y[part])
    w = head.solve(0.3)
    torch.testing.assert_close(w, _ridge(h, F.one_hot(y, 5), 0.3))
    torch.testing.assert_close(head.scores(h[:3]), h[:3].double() @ w)


def test_validation_losses_match_a_direct_solve_for_each_ridge():
    g = torch.Generator().manual_seed(1)
    h = torch.rand(40, 30, generator=g)  # fewer fitting rows than features, as RanPAC's M >> n
    y = F.one_hot(torch.randint(0, 4, (40,), generator=g), 4).double()
    ridges = (1e-4, 1e-1, 1.0, 10.0)
    losses = ridge_validation_losses(h, y, ridges, fit_fraction=0.75)
    for lam, loss in zip(ridges, losses):
        w = _ridge(h[:30], y[:30], lam)
        assert loss == pytest.approx(float((h[30:].double() @ w - y[30:]).pow(2).mean()), rel=1e-6)
    assert choose_ridge(h, y, ridges, 0.75) == ridges[min(range(4), key=losses.__getitem__)]


def test_learner_predicts_relu_projection_times_ridge_weights():
    data = make_blobs(num_classes=4, per_class=30, dim=8, spread=2.0, seed=1)
    stream = class_incremental(data, tasks=2, seed=0)
    learner = make_learner("ranpac", {"projection_dim": 64}, seed=0)
    for e in stream:
        learner.learn(e)
    assert len(learner.ridges) == 2 and all(r in RIDGE_GRID for r in learner.ridges)
    xs = torch.cat([e.train_tensors()[0] for e in stream])
    ys = torch.cat([e.train_tensors()[1] for e in stream])
    h = project(xs, learner.projection)
    assert torch.equal(h, F.relu(xs.double() @ learner.projection.double()))
    w = _ridge(h, F.one_hot(ys, 4), learner.ridges[-1])  # G and C hold both experiences
    xt, _ = stream[1].test_tensors()
    torch.testing.assert_close(learner.predict(xt).double(), project(xt, learner.projection) @ w, rtol=1e-4, atol=1e-5)


def test_fixed_ridge_is_used():
    data = make_blobs(num_classes=4, per_class=30, dim=8, seed=1)
    learner = make_learner("ranpac", {"projection_dim": 32, "ridge": 5.0}, seed=0)
    learner.learn(class_incremental(data, tasks=2, seed=0)[0])
    assert learner.ridges == [5.0]


def test_bad_settings_raise():
    with pytest.raises(ConfigError, match="projection_dim"):
        make_learner("ranpac", {"projection_dim": -1})
    with pytest.raises(ConfigError, match="ridge"):
        make_learner("ranpac", {"ridge": -1.0})
    with pytest.raises(ConfigError, match="val_fraction"):
        make_learner("ranpac", {"val_fraction": 1.0})
