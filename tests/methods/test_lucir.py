"""LUCIR (Hou et al., CVPR 2019): cosine head, fixed old-class weights, imprinting, the three-term loss."""

import math

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


def test_old_class_weights_stay_bit_identical_and_new_ones_learn(stream):
    learner = make_learner("lucir", {"epochs": 2}, seed=0)
    learner.learn(stream[0])
    w0 = learner.model.head.weight.detach().clone()
    learner.learn(stream[1])
    w1 = learner.model.head.weight.detach()
    assert torch.equal(w1[:2], w0[:2])
    assert not torch.equal(w1[2:4], w0[2:4])


def test_new_class_weights_are_imprinted(stream):
    learner = make_learner("lucir", {"epochs": 1}, seed=0)
    learner.learn(stream[0])
    w = learner.model.head.weight.detach()
    norm = w[:2].norm(dim=1).mean()
    x, y = stream[1].train_tensors()
    learner.classes.observe(stream[1], y)
    learner.before_experience(stream[1])
    with torch.no_grad():
        learner.model.eval()
        f = F.normalize(learner.model.features(x), dim=1)
    for c in (2, 3):
        torch.testing.assert_close(learner.model.head.weight[c], F.normalize(f[y == c].mean(0), dim=0) * norm)


def test_last_relu_is_removed_so_features_can_be_negative(stream):
    x, _ = stream[0].train_tensors()
    with torch.no_grad():
        learner = make_learner("lucir", {}, seed=0)
        learner.prepare(stream[0].input_shape, stream[0].num_classes)
        assert (learner.model.features(x) < 0).any()
        keep = make_learner("lucir", {"last_relu": True}, seed=0)
        keep.prepare(stream[0].input_shape, stream[0].num_classes)
        assert (keep.model.features(x) >= 0).all()


def test_loss_is_ce_plus_less_forget_plus_margin_ranking(stream):
    learner = make_learner("lucir", {"epochs": 1, "buffer_size": 40}, seed=0)
    learner.learn(stream[0])
    learner.learn(stream[1])
    x, y = stream[2].train_tensors()
    learner.classes.observe(stream[2], y)
    learner.before_experience(stream[2])
    mx, my = learner.memory.tensors()
    x, y = torch.cat([x[:12], mx[:6], mx[-6:]]), torch.cat([y[:12], my[:6], my[-6:]])
    with torch.no_grad():
        learner.model.backbone.net[1].weight.mul_(1.1)  # student features != teacher features
        f, f_old = learner.model.features(x), learner.teacher.features(x)
        cos = learner.model.head.cosine(f)
    ce = F.cross_entropy(learner.model.head.sigma * cos, y)
    lf = 5.0 * math.sqrt(4 / 2) * (1 - F.cosine_similarity(f, f_old)).mean()  # 4 old classes, 2 new
    old = y < 4
    gt = cos[old].gather(1, y[old, None])
    hard = cos[old][:, 4:6].topk(2, dim=1).values
    mr = torch.clamp(0.5 - gt + hard, min=0).mean()
    assert mr > 0 and lf > 0
    torch.testing.assert_close(learner.loss(x, y, stream[2]), ce + lf + mr)


def test_bad_settings():
    with pytest.raises(ConfigError, match="k_hard"):
        make_learner("lucir", {"k_hard": 0})
    with pytest.raises(ConfigError, match="lambda_base"):
        make_learner("lucir", {"lambda_base": -1.0})


def test_runs_without_hidden_layers(stream):
    learner = make_learner("lucir", {"hidden": (), "epochs": 1}, seed=0)
    learner.learn(stream[0])
    learner.learn(stream[1])
    x, _ = stream[1].test_tensors()
    assert torch.isfinite(learner.predict(x)).all()
