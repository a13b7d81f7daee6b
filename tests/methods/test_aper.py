"""APER / ADAM (arXiv 2303.07338): adapt on the first experience only, then prototypes on [PTM, adapted]."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.adapters.feature import BottleneckAdapter, IdentityLinear, ScaleShift, feature_adapter, rms_normalize
from lifelong.data import make_blobs
from lifelong.errors import CheckpointError, ConfigError
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental


@pytest.fixture
def stream():
    data = make_blobs(num_classes=6, per_class=40, dim=8, spread=2.5, seed=2)
    return class_incremental(data, tasks=3, seed=0)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("kind", ["adapter", "ssf", "finetune"])
def test_adapts_on_first_experience_only_then_frozen(stream, kind):
    learner = make_learner("aper", {"adapter": kind, "epochs": 4, "batch_size": 16, "lr": 0.05})
    assert learner.adapter is None
    learner.learn(stream[0])
    assert learner.adapted and learner.adapter is not None
    assert len(learner.adaptation_losses) == 4
    assert learner.adaptation_losses[-1] < learner.adaptation_losses[0]  # it trained
    assert all(not p.requires_grad for p in learner.adapter.parameters())
    frozen = _params(learner.adapter)
    seen_after_first = learner.samples_seen
    learner.learn(stream[1])
    learner.learn(stream[2])
    assert len(learner.adaptation_losses) == 4  # no further adaptation
    assert all(torch.equal(a, b) for a, b in zip(frozen, learner.adapter.parameters()))
    n12 = len(stream[1]) + len(stream[2])
    assert learner.samples_seen == seen_after_first + n12  # later experiences: one embedding pass, no training


def test_prototypes_are_class_means_of_merged_embedding(stream):
    learner = make_learner("aper", {"epochs": 2})
    for e in stream:
        learner.learn(e)
    x = torch.cat([e.train_tensors()[0] for e in stream])
    y = torch.cat([e.train_tensors()[1] for e in stream])
    g = rms_normalize(x)
    with torch.no_grad():
        merged = torch.cat([g, learner.adapter(g)], dim=1)
    assert learner.features(x).shape == (len(x), 16)
    means = torch.stack([merged[y == c].double().mean(0) for c in range(6)])
    torch.testing.assert_close(learner.prototypes(), means, rtol=1e-5, atol=1e-6)
    xt, _ = stream[0].test_tensors()
    gt = rms_normalize(xt)
    with torch.no_grad():
        ft = torch.cat([gt, learner.adapter(gt)], dim=1).double()
    expected = F.normalize(ft, dim=1) @ F.normalize(means, dim=1).T
    torch.testing.assert_close(learner.predict(xt), expected.float(), rtol=1e-4, atol=1e-5)


def test_adapted_only_merge_uses_adapter_output(stream):
    learner = make_learner("aper", {"epochs": 1, "merge": "adapted"})
    learner.learn(stream[0])
    x, _ = stream[0].train_tensors()
    assert learner.features(x).shape == (len(x), 8)


def test_untrained_identity_adapter_reduces_to_simplecil(stream):
    """With no adaptation the adapter is the identity: [g, g] gives SimpleCIL's cosine scores."""
    aper = make_learner("aper", {"epochs": 0, "input_norm": "none"})
    simple = make_learner("simplecil")
    for e in stream:
        aper.learn(e)
        simple.learn(e)
    xt = torch.cat([e.test_tensors()[0] for e in stream])
    torch.testing.assert_close(aper.predict(xt), simple.predict(xt), rtol=1e-5, atol=1e-5)


def test_adapter_modules_start_at_identity():
    x = torch.randn(5, 12)
    assert torch.equal(BottleneckAdapter(12, 4)(x), x)
    torch.testing.assert_close(IdentityLinear(12)(x), x)
    ssf = ScaleShift(12)
    assert (ssf.gamma - 1).abs().max() < 0.2 and ssf.beta.abs().max() < 0.2
    assert sum(p.numel() for p in feature_adapter("adapter", 12, 4).parameters()) == 12 * 4 + 4 + 4 * 12 + 12
    with pytest.raises(ConfigError, match="unknown adapter"):
        feature_adapter("vpt", 12)


def test_config_and_checkpoint_errors(stream):
    with pytest.raises(ConfigError, match="VPT"):
        make_learner("aper", {"adapter": "vpt"})
    with pytest.raises(ConfigError, match="merge"):
        make_learner("aper", {"merge": "sum"})
    learner = make_learner("aper", {"epochs": 1})
    learner.learn(stream[0])
    state = learner.state_dict()
    state["adapter"] = {"down.weight": torch.zeros(3, 3)}
    other = make_learner("aper", {"epochs": 1})
    with pytest.raises(CheckpointError, match="aper"):
        other.load_state_dict(state)
    assert other.adapter is None  # nothing half-loaded


def test_online_first_experience_gets_one_pass():
    from lifelong.scenarios import online

    data = make_blobs(num_classes=4, per_class=30, dim=8, seed=0)
    s = online(data, tasks=2, batch_size=10, seed=0)
    learner = make_learner("aper", {"epochs": 5})
    learner.learn(s[0])
    assert len(learner.adaptation_losses) == 1 and learner.samples_seen == 2 * len(s[0])  # one pass + prototypes
