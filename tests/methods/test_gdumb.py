"""GDumb: class-balanced memory, a model trained from scratch on it, SGDR."""

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.methods.gdumb import sgdr_lr
from lifelong.scenarios import class_incremental

QUICK = {"epochs": 8, "buffer_size": 30}


def test_memory_is_class_balanced(blobs):
    stream = class_incremental(blobs, tasks=2, seed=0)
    learner = make_learner("gdumb", QUICK)
    learner.learn(stream[0])
    assert torch.bincount(learner.buffer.all()["y"]).max() == 15
    learner.learn(stream[1])
    counts = torch.bincount(learner.buffer.all()["y"], minlength=4)
    assert counts.sum() == 30 and counts.max() - counts.min() <= 1 and (counts > 0).all()


def test_model_is_retrained_from_scratch(blobs):
    """Whatever the model was before an experience, the model after it is the same."""
    stream = class_incremental(blobs, tasks=2, seed=0)
    a, b = make_learner("gdumb", QUICK), make_learner("gdumb", QUICK)
    a.learn(stream[0])
    b.learn(stream[0])
    with torch.no_grad():
        for p in b.model.parameters():
            p.add_(torch.randn_like(p))  # spoil b's model
    a.learn(stream[1])
    b.learn(stream[1])
    x, _ = stream[1].test_tensors()
    assert torch.equal(a.predict(x), b.predict(x))


def test_sgdr_restarts():
    assert sgdr_lr(0.05, 0.0005, 0.0) == pytest.approx(0.05)
    for restart in (1.0, 3.0, 7.0, 15.0):
        assert sgdr_lr(0.05, 0.0005, restart) == pytest.approx(0.05)
        assert sgdr_lr(0.05, 0.0005, restart - 1e-6) == pytest.approx(0.0005, abs=1e-6)
    assert sgdr_lr(0.05, 0.0005, 2.0) == pytest.approx(0.5 * (0.05 + 0.0005))  # middle of the 2-pass cycle


def test_bad_settings():
    with pytest.raises(ConfigError, match="SGDR"):
        make_learner("gdumb", {"lr_schedule": "cosine"})
    with pytest.raises(ConfigError, match="min_lr"):
        make_learner("gdumb", {"min_lr": 1.0})
