"""DER and DER++: logits stored with the batch, MSE on them, CE on stored labels."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental


@pytest.fixture
def stream(blobs):
    return class_incremental(blobs, tasks=2, seed=0)


def test_buffer_stores_the_logits_computed_before_the_step(stream):
    learner = make_learner("der", {"buffer_size": 500, "epochs": 1, "batch_size": 8})
    learner.prepare(stream[0].input_shape, stream[0].num_classes)
    x, y = stream[0].train_tensors()
    learner.classes.observe(stream[0], y)
    xb, yb = x[:8], y[:8]
    with torch.no_grad():
        before = learner.model(xb)
    learner.train_step(xb, yb, stream[0])
    stored = learner.buffer.all()
    assert torch.equal(stored["x"], xb) and torch.equal(stored["logits"], before)
    with torch.no_grad():
        assert not torch.allclose(learner.model(xb), before)  # the step changed the model


@pytest.mark.parametrize("name", ["der", "derpp"])
def test_replay_terms_are_the_papers(name, stream):
    """With one stored example whose logits are the current ones + 1, DER adds alpha * 1 (the MSE) and
    DER++ further adds beta * CE on the stored label."""
    learner = make_learner(name, {"buffer_size": 1, "alpha": 0.3, **({"beta": 0.7} if name == "derpp" else {})})
    learner.prepare(stream[0].input_shape, stream[0].num_classes)
    x, y = stream[0].train_tensors()
    learner.classes.observe(stream[0], y)
    with torch.no_grad():
        logits = learner.model(x[:1])
    learner.buffer.add(learner.generator, x=x[:1], y=y[:1], logits=logits + 1.0)
    xb, yb = x[1:9], y[1:9]
    with torch.no_grad():
        total = learner.loss(xb, yb, stream[0])
        ce = F.cross_entropy(learner.logits(xb), yb)
        extra = 0.3 * 1.0
        if name == "derpp":
            extra += 0.7 * F.cross_entropy(learner.logits(x[:1]), y[:1]).item()
    assert total.item() == pytest.approx(ce.item() + extra, rel=1e-5)


def test_logit_replay_keeps_old_logits_closer_than_finetuning(stream):
    der = make_learner("der", {"alpha": 1.0, "epochs": 3})
    ft = make_learner("finetune", {"epochs": 3})
    x0, _ = stream[0].test_tensors()
    refs = []
    for learner in (der, ft):
        learner.learn(stream[0])
        with torch.no_grad():
            refs.append(learner.model(x0)[:, :2].clone())
    for learner in (der, ft):
        learner.learn(stream[1])
    with torch.no_grad():
        drift_der = F.mse_loss(der.model(x0)[:, :2], refs[0])
        drift_ft = F.mse_loss(ft.model(x0)[:, :2], refs[1])
    assert drift_der < 0.5 * drift_ft


def test_bad_settings():
    with pytest.raises(ConfigError, match="alpha"):
        make_learner("der", {"alpha": -1.0})
    with pytest.raises(ConfigError, match="beta"):
        make_learner("derpp", {"beta": -0.5})
    with pytest.raises(ConfigError, match="buffer"):
        make_learner("derpp", {"buffer": "fifo"})
