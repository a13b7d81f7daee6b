"""A-GEM and GEM: the applied update never conflicts with the memory gradients."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.optim.projection import flat_grad
from lifelong.scenarios import class_incremental


@pytest.fixture
def stream(blobs):
    return class_incremental(blobs, tasks=2, seed=0)


def _record_steps(learner, check):
    """Run ``check(learner)`` after every projection (just before the optimizer step)."""
    original = learner.project

    def project():
        original()
        check(learner)

    learner.project = project


def test_agem_update_has_nonnegative_dot_with_reference(stream):
    learner = make_learner("agem", {"lr": 0.1, "epochs": 3, "reference_batch_size": 10_000})
    learner.learn(stream[0])
    assert len(learner.buffer) > 0 and learner.projections == 0  # nothing to protect during experience 0
    mem = learner.buffer.all()
    assert set(mem["y"].tolist()) == set(stream[0].classes)
    dots = []

    def check(lrn):
        params = [p for g in lrn.optimizer.param_groups for p in g["params"]]
        ref = F.cross_entropy(lrn.logits(mem["x"]), mem["y"])  # the whole memory = the reference batch
        g_ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(ref, params)])
        dots.append(float(torch.dot(flat_grad(params), g_ref)))
        # the memory holds only earlier experiences while training
        assert set(lrn.buffer.all()["y"].tolist()) == set(stream[0].classes)

    _record_steps(learner, check)
    learner.learn(stream[1])
    assert learner.projections > 0
    assert min(dots) >= -1e-5 * max(abs(d) for d in dots)


def test_gem_update_conflicts_with_no_earlier_experience(blobs):
    stream = class_incremental(blobs, tasks=3, seed=0)
    learner = make_learner("gem", {"lr": 0.1, "epochs": 2, "margin": 0.0, "eps": 1e-6, "buffer_size": 30})
    learner.learn(stream[0])
    learner.learn(stream[1])
    assert learner.buffer.quota == {0: 15, 1: 15}
    worst = []

    def check(lrn):
        params = [p for g in lrn.optimizer.param_groups for p in g["params"]]
        with torch.enable_grad():
            G = lrn.memory_gradients(params)
        assert len(G) == 2  # one gradient per earlier experience
        g = flat_grad(params)
        worst.append(float((G @ g).min() / (G.norm(dim=1).max() * g.norm())))

    _record_steps(learner, check)
    before = learner.projections
    learner.learn(stream[2])
    assert learner.projections > before
    assert min(worst) >= -1e-4


def test_bad_settings():
    with pytest.raises(ConfigError, match="reference_batch_size"):
        make_learner("agem", {"reference_batch_size": 0})
    with pytest.raises(ConfigError, match="margin"):
        make_learner("gem", {"margin": -1.0})
