"""SLCA (arXiv 2303.05118): slow learner, per-experience heads, classifier alignment; class Gaussians."""

import json

import pytest
import torch

from lifelong.data import make_blobs
from lifelong.errors import CheckpointError, ConfigError, DataError
from lifelong.heads.prototype import ClassGaussians
from lifelong.methods import make_learner
from lifelong.papers.simplecil import clinc_available
from lifelong.scenarios import class_incremental

QUICK = {"epochs": 4, "milestones": (3,), "ca_epochs": 3, "ca_samples": 64}


@pytest.fixture
def stream():
    data = make_blobs(num_classes=6, per_class=40, dim=8, spread=3.0, seed=3)
    return class_incremental(data, tasks=3, seed=0)


def _rep_change(learner):
    w = learner.representation.weight
    return float((w - torch.eye(w.shape[0])).norm())


def test_class_gaussians_statistics_and_sampling():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g) @ torch.tensor([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.3]])
    y = torch.arange(400) % 2
    x[y == 1] += 5.0
    bank = ClassGaussians(3, ridge=1e-4)
    bank.update(x, y)
    assert bank.classes().tolist() == [0, 1]
    for c in (0, 1):
        xc = x[y == c].double()
        torch.testing.assert_close(bank.means[c], xc.mean(0))
        torch.testing.assert_close(bank.covs[c].double(), torch.cov(xc.T) + 1e-4 * torch.eye(3), rtol=1e-5, atol=1e-5)
    s, labels = bank.sample(20000, torch.Generator().manual_seed(1))
    assert s.shape == (40000, 3) and labels.tolist() == [0] * 20000 + [1] * 20000
    for c in (0, 1):
        torch.testing.assert_close(s[labels == c].double().mean(0), bank.means[c], atol=0.06, rtol=0)
        torch.testing.assert_close(torch.cov(s[labels == c].double().T), bank.covs[c].double(), atol=0.1, rtol=0.05)
    scaled, _ = bank.sample(20000, torch.Generator().manual_seed(1), mean_scale=torch.tensor([1.0, 0.5, 1.0]))
    torch.testing.assert_close(scaled[20000:].double().mean(0), 0.5 * bank.means[1], atol=0.06, rtol=0)
    other = ClassGaussians(3)
    other.load(bank.state())
    assert torch.equal(other.means, bank.means) and torch.equal(other.covs, bank.covs)
    with pytest.raises(DataError, match="no class statistics"):
        ClassGaussians(3).sample(2, g)


def test_learning_rates_of_representation_and_head_differ_as_configured(stream):
    learner = make_learner("slca", {**QUICK, "lr": 0.02, "backbone_lr_scale": 0.01})
    learner.learn(stream[0])
    assert learner.last_param_groups == [
        {"name": "representation", "lr": pytest.approx(2e-4)},
        {"name": "head", "lr": pytest.approx(0.02)},
    ]
    frozen = make_learner("slca", {**QUICK, "backbone_lr_scale": 0.0})
    frozen.learn(stream[0])
    assert [grp["name"] for grp in frozen.last_param_groups] == ["head"]
    assert _rep_change(frozen) == 0.0


def test_slow_learner_moves_the_representation_less(stream):
    changes = {}
    for scale in (0.01, 1.0):
        learner = make_learner("slca", {**QUICK, "backbone_lr_scale": scale, "ca": False})
        learner.learn(stream[0])
        changes[scale] = _rep_change(learner)
    assert 0 < changes[0.01] < 0.05 * changes[1.0]


def test_old_heads_frozen_and_alignment_changes_the_head(stream):
    learner = make_learner("slca", QUICK)
    learner.learn(stream[0])
    first = stream[0].classes
    head0 = learner.head_w[first].clone()
    assert torch.equal(learner.aligned_w, learner.head_w)  # no alignment after the first experience
    learner.learn(stream[1])
    assert torch.equal(learner.head_w[first], head0)  # stage 1 trains only the current experience's head
    seen = first + stream[1].classes
    assert not torch.allclose(learner.aligned_w[seen], learner.head_w[seen])  # CA re-trained every seen head
    # the next experience starts from the pre-alignment heads (official backup/recall)
    before = learner.head_w[seen].clone()
    learner.learn(stream[2])
    assert torch.equal(learner.head_w[seen], before)
    unaligned = make_learner("slca", {**QUICK, "ca": False})
    for e in stream:
        unaligned.learn(e)
    assert torch.equal(unaligned.aligned_w, unaligned.head_w)


def test_class_statistics_are_those_of_the_representation(stream):
    learner = make_learner("slca", QUICK)
    learner.learn(stream[0])
    x, y = stream[0].train_tensors()
    z = learner.features(x).double()
    for c in stream[0].classes:
        torch.testing.assert_close(learner.gaussians.means[c], z[y == c].mean(0), rtol=1e-5, atol=1e-5)
    assert not learner.gaussians.known[stream[1].classes].any()


def test_alignment_helps_on_blobs_with_a_biased_head():
    """Heads trained one experience at a time are mis-calibrated across experiences; CA fixes part of it."""
    data = make_blobs(num_classes=12, per_class=60, dim=16, spread=3.5, seed=5)
    s = class_incremental(data, tasks=4, seed=0)
    acc = {}
    for ca in (False, True):
        learner = make_learner("slca", {"epochs": 10, "milestones": (8,), "ca": ca})
        for e in s:
            learner.learn(e)
        acc[ca] = float(
            (learner.predict(data.x_test).argmax(1) == torch.as_tensor(s[0].label_map)[data.y_test]).double().mean()
        )
    assert acc[True] > acc[False]


def test_config_and_checkpoint_errors(stream):
    with pytest.raises(ConfigError, match="representation"):
        make_learner("slca", {"representation": "vit"})
    with pytest.raises(ConfigError, match="backbone_lr_scale"):
        make_learner("slca", {"backbone_lr_scale": -1})
    learner = make_learner("slca", QUICK)
    learner.learn(stream[0])
    state = learner.state_dict()
    state["head_w"] = torch.zeros(2, 2)
    other = make_learner("slca", QUICK)
    with pytest.raises(CheckpointError, match="slca"):
        other.load_state_dict(state)
    assert other.representation is None  # unchanged


@pytest.mark.skipif(not clinc_available(), reason="CLINC150 files not found (set LIFELONG_DATA)")
def test_quick_reproduction_paper_56():
    from lifelong.papers import reproduce

    claim = reproduce("slca")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "slca" and claim.scale == "quick" and m["classes"] == 60
    # what reliably holds at this scale: alignment helps, SLCA beats SimpleCIL and stays below the joint bound
    assert m["slca"] > m["sl"] and m["slca"] >= m["simplecil"]
    assert m["slca"] <= m["joint_logistic_regression"] + 0.01
    # slow learning alone does not beat SeqFT here (0.883 vs 0.885; the claim wants +10 points): not held
    assert claim.held is False
    # the verdict reads the numbers: with negative gains required, SLCA >= SimpleCIL (0.907 vs 0.894) decides
    assert reproduce("slca", sets=("min_sl_gain=-0.5", "min_ca_gain=-0.5")).held is True


def test_online_stream_gets_one_ordered_pass():
    from lifelong.scenarios import online

    data = make_blobs(num_classes=4, per_class=30, dim=8, seed=0)
    s = online(data, tasks=2, batch_size=10, seed=0)
    learner = make_learner("slca", QUICK)
    learner.learn(s[0])
    assert learner.samples_seen == len(s[0])  # one pass, not `epochs` passes
