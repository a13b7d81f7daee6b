"""iCaRL (arXiv 1611.07725): herded memory, sigmoid distillation, nearest-mean-of-exemplars prediction."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental


@pytest.fixture(scope="module")
def stream():
    return class_incremental(make_blobs(num_classes=6, per_class=40, dim=8, seed=2), tasks=3, seed=0)


def test_memory_is_k_over_classes_and_keeps_herding_prefix(stream):
    learner = make_learner("icarl", {"buffer_size": 30, "epochs": 1}, seed=0)
    learner.learn(stream[0])
    mx, my = learner.memory.tensors()
    assert torch.equal(torch.bincount(my, minlength=6)[:2], torch.tensor([15, 15]))
    kept = {c: mx[my == c].clone() for c in stream[0].classes}
    learner.learn(stream[1])
    mx, my = learner.memory.tensors()
    assert len(my) == 28 and torch.bincount(my, minlength=6)[:4].tolist() == [7, 7, 7, 7]
    for c in stream[0].classes:
        assert torch.equal(mx[my == c], kept[c][:7])


def test_nme_predicts_the_nearest_exemplar_mean(stream):
    learner = make_learner("icarl", {"epochs": 1}, seed=0)
    learner.learn(stream[0])
    learner.learn(stream[1])
    x, _ = stream[1].test_tensors()
    mx, my = learner.memory.tensors()
    with torch.no_grad():
        learner.model.eval()
        fm = F.normalize(learner.model.features(mx).double(), dim=1)
        f = F.normalize(learner.model.features(x).double(), dim=1)
    means = torch.stack([F.normalize(fm[my == c].mean(0), dim=0) for c in range(4)])
    expected = torch.cdist(f, means).argmin(1)
    scores = learner.predict(x)
    assert scores.shape == (len(x), 4)
    assert torch.equal(scores.argmax(1), expected)
    torch.testing.assert_close(scores, -torch.cdist(f, means).square().float())  # on normalised features
    linear = make_learner("icarl", {"epochs": 1, "classifier": "linear"}, seed=0)
    linear.learn(stream[0])
    linear.learn(stream[1])  # same training: only the prediction rule differs
    with torch.no_grad():
        logits = linear.model(x)[:, :4]
    assert torch.equal(linear.predict(x), logits)


def test_loss_distils_old_classes_with_teacher_sigmoids(stream):
    learner = make_learner("icarl", {"epochs": 1}, seed=0)
    learner.learn(stream[0])
    learner.classes.observe(stream[1], stream[1].train_tensors()[1])
    learner.before_experience(stream[1])
    x, y = stream[1].train_tensors()
    x, y = x[:16], y[:16]
    with torch.no_grad():
        learner.model.head.weight.add_(0.5)  # student != teacher, so distillation targets matter
        out, t = learner.model(x)[:, :4], learner.teacher(x)[:, :4]
    targets = F.one_hot(y, 6).float()[:, :4]
    targets[:, :2] = torch.sigmoid(t[:, :2])
    expected = F.binary_cross_entropy_with_logits(out, targets, reduction="sum") / len(y)
    torch.testing.assert_close(learner.loss(x, y, stream[1]), expected)
    plain = F.binary_cross_entropy_with_logits(out, F.one_hot(y, 6).float()[:, :4], reduction="sum") / len(y)
    assert not torch.allclose(expected, plain)


def test_bad_settings():
    with pytest.raises(ConfigError, match="classifier"):
        make_learner("icarl", {"classifier": "ncm"})
    with pytest.raises(ConfigError, match="buffer_size"):
        make_learner("icarl", {"buffer_size": 0})
