"""TENT (Wang et al., arXiv 2006.10726): entropy steps on the normalisation layer's scale and shift only."""

import numpy as np
import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.methods.lame import batched_accuracy, tta_batches
from lifelong.methods.tent import entropy
from lifelong.scenarios import class_incremental

CFG = {"epochs": 5, "lr": 0.05, "tent_lr": 0.01}


@pytest.fixture
def trained(blobs):
    stream = class_incremental(blobs, tasks=1, seed=0)
    learner = make_learner("tent", CFG)
    learner.learn(stream[0])
    return learner, stream


def test_adaptation_lowers_entropy_and_moves_only_the_norm_affine(trained):
    learner, stream = trained
    x, _ = stream[0].test_tensors()
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    ent0 = float(entropy(learner.model.batch_forward(x).detach()))
    for _ in range(20):
        learner.predict(x)
    ent1 = float(entropy(learner.model.batch_forward(x).detach()))
    assert ent1 < ent0
    after = learner.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"backbone.1.weight", "backbone.1.bias"}  # running statistics untouched too


def test_reset_restores_the_source_and_source_predict_does_not_adapt(trained):
    learner, stream = trained
    x, _ = stream[0].test_tensors()
    src = learner.source_predict(x)
    learner.predict(x)
    learner.predict(x)
    assert not torch.equal(learner.source_predict(x), src)
    learner.reset()
    assert torch.equal(learner.source_predict(x), src)
    off = make_learner("tent", {**CFG, "adapt_on_predict": False})
    off.load_state_dict(learner.state_dict())
    assert torch.equal(off.predict(x), src) and torch.equal(off.predict(x), src)


def test_class_grouped_batches_break_batch_statistics(trained):
    # the failure LAME's paper reports: one-class batches normalise away the class signal
    learner, stream = trained
    x, y = stream[0].test_tensors()
    acc = {}
    for order in ("iid", "grouped"):
        learner.reset()
        acc[order] = batched_accuracy(learner.predict, x, y, tta_batches(y.numpy(), 16, order, seed=0))
    learner.reset()
    source = float((learner.source_predict(x).argmax(1) == y).float().mean())
    assert acc["iid"] >= source - 0.05
    assert acc["grouped"] <= source - 0.3


def test_single_example_batches_are_scored_without_a_step(trained):
    learner, stream = trained
    x, _ = stream[0].test_tensors()
    assert torch.equal(learner.predict(x[:1]), learner.source_predict(x[:1]))
    assert learner.momentum_buffers is None


@pytest.mark.parametrize("bad", [{"tent_lr": 0.0}, {"tent_momentum": 1.0}, {"tent_steps": 0}])
def test_bad_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        make_learner("tent", bad)


def test_learning_again_starts_from_the_source_parameters(blobs):
    stream = class_incremental(blobs, tasks=2, seed=0)
    learner = make_learner("tent", CFG)
    learner.learn(stream[0])
    src = {k: v.clone() for k, v in learner.source.items()}
    x, _ = stream[0].test_tensors()
    for _ in range(3):
        learner.predict(x)
    learner.before_experience(stream[1])
    assert all(torch.equal(learner._affine()[k].detach(), src[k]) for k in src)
    assert np.isfinite(learner.predict(x).numpy()).all()


def test_after_running_scores_follow_the_step_with_the_source_statistics(trained):
    # fiveai/LAME's TENT: step with batch statistics, then score in eval mode (running statistics)
    learner, stream = trained
    x, _ = stream[0].test_tensors()
    lame_code = make_learner("tent", {**CFG, "score": "after-running"})
    lame_code.load_state_dict(learner.state_dict())
    lame_code.reset()
    out = lame_code.predict(x)
    assert not torch.equal(lame_code._affine()["weight"].detach(), lame_code.source["weight"])  # it stepped
    assert torch.equal(out, lame_code.source_predict(x))
    with pytest.raises(ConfigError):
        make_learner("tent", {"score": "twice"})
