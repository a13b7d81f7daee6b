"""SLCA (arXiv 2303.05118): the encoder learns slowly, per-experience heads, classifier alignment; class Gaussians."""

import json

import pytest
import torch

from lifelong.errors import CheckpointError, ConfigError, DataError
from lifelong.heads.prototype import ClassGaussians
from lifelong.methods import make_learner
from lifelong.papers.simplecil import clinc_available

QUICK = {"epochs": 4, "batch_size": 8, "lr": 0.1, "ca_epochs": 3, "ca_samples": 64}


@pytest.fixture
def cfg(tiny_text_model):
    return {**QUICK, "backbone": str(tiny_text_model)}


def _weights(learner):
    return {n: p.detach().clone() for n, p in learner.representation.named_parameters()}


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


def test_encoder_and_head_learning_rates_differ_as_configured(cfg, token_stream):
    learner = make_learner("slca", {**cfg, "lr": 0.02, "backbone_lr_scale": 0.01})
    learner.learn(token_stream[0])
    assert learner.last_param_groups == [
        {"name": "representation", "lr": pytest.approx(2e-4)},
        {"name": "head", "lr": pytest.approx(0.02)},
    ]
    frozen = make_learner("slca", {**cfg, "backbone_lr_scale": 0.0})
    frozen.prepare((), token_stream.num_classes)
    before = _weights(frozen)
    frozen.learn(token_stream[0])
    assert [g["name"] for g in frozen.last_param_groups] == ["head"]
    assert all(torch.equal(before[n], w) for n, w in _weights(frozen).items())


def test_the_encoder_itself_learns_and_a_slow_learner_moves_it_less(cfg, token_stream):
    moved = {}
    for scale in (0.01, 1.0):
        learner = make_learner("slca", {**cfg, "backbone_lr_scale": scale, "ca": False})
        learner.prepare((), token_stream.num_classes)
        before = _weights(learner)
        learner.learn(token_stream[0])
        after = _weights(learner)
        moved[scale] = sum(float((after[n] - before[n]).norm()) for n in before)
    assert moved[0.01] > 0 and moved[1.0] > 10 * moved[0.01]


def test_top_layers_only_learn_and_reuse_the_cached_bottom(cfg, token_stream):
    learner = make_learner("slca", {**cfg, "train_layers": 1, "backbone_lr_scale": 1.0})
    learner.prepare((), token_stream.num_classes)
    before = _weights(learner)
    learner.learn(token_stream[0])
    changed = {n for n, w in _weights(learner).items() if not torch.equal(before[n], w)}
    assert changed and all(n.startswith("encoder.encoder.layer.1.") for n in changed)
    x, _ = token_stream[0].test_tensors()
    rep = learner.representation.eval()
    with torch.no_grad():
        torch.testing.assert_close(rep.top(*rep.bottom(x, 1), 1), rep(x), rtol=1e-5, atol=1e-5)


def test_old_heads_frozen_and_aligned_heads_only_predict(cfg, tiny_text_model):
    from conftest import text_data
    from lifelong.data.tokens import text_token_dataset
    from lifelong.scenarios import class_incremental

    data = text_token_dataset(text_data(), encoder=tiny_text_model, max_length=16)
    stream = class_incremental(data, tasks=4, seed=0)  # one topic per experience
    learner = make_learner("slca", cfg)
    learner.learn(stream[0])
    first = list(stream[0].classes)
    w0 = learner.head_w[first].clone()
    torch.testing.assert_close(learner.aligned_w, learner.head_w)  # no alignment after one experience
    for e in stream[1:]:
        learner.learn(e)
        # stage-1 heads stay as each experience left them (the official fc.recall()): alignment never
        # writes into them, so the next experience's alignment starts again from the pre-alignment heads
        assert torch.equal(learner.head_w[first], w0)
        assert not torch.allclose(learner.aligned_w[first], w0)  # alignment re-trains the old head
    x, _ = stream[1].test_tensors()
    assert not torch.allclose(learner.logits(x, aligned=False), learner.logits(x, aligned=True))


def test_class_statistics_are_those_of_the_trained_encoder_and_kept(cfg, token_stream):
    from lifelong.encoders.text_backbone import encode_tokens

    learner = make_learner("slca", cfg)
    learner.learn(token_stream[0])
    x, y = token_stream[0].train_tensors()
    z = encode_tokens(learner.representation.eval(), x).double()  # the trained encoder, eval mode, no memo
    for c in token_stream[0].classes:
        torch.testing.assert_close(learner.gaussians.means[c], z[y == c].mean(0), rtol=1e-5, atol=1e-5)
    assert not learner.gaussians.known[list(token_stream[1].classes)].any()
    old = learner.gaussians.means.clone()
    learner.learn(token_stream[1])
    moved = encode_tokens(learner.representation.eval(), x).double()
    assert not torch.allclose(moved, z)  # the encoder changed ...
    first = list(token_stream[0].classes)
    assert torch.equal(learner.gaussians.means[first], old[first])  # ... but old classes keep their statistics


def test_config_input_and_checkpoint_errors(cfg, token_stream, blobs):
    with pytest.raises(ConfigError, match="backbone_lr_scale"):
        make_learner("slca", {"backbone_lr_scale": -1})
    with pytest.raises(ConfigError, match="train_layers"):
        make_learner("slca", {"train_layers": -2})
    learner = make_learner("slca", cfg)
    learner.learn(token_stream[0])
    with pytest.raises(DataError, match="token ids"):
        learner.predict(torch.rand(3, 6))
    state = learner.state_dict()
    state["head_w"] = torch.zeros(2, 2)
    other = make_learner("slca", cfg)
    with pytest.raises(CheckpointError, match="slca"):
        other.load_state_dict(state)
    assert other.representation is None  # unchanged


@pytest.mark.skipif(not clinc_available(), reason="CLINC150 files not found (set LIFELONG_DATA)")
def test_quick_reproduction_paper_56(monkeypatch):
    from lifelong.methods.slca import SLCA
    from lifelong.papers import reproduce

    claim = reproduce("slca")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "slca" and claim.scale == "quick" and m["classes"] == 30
    assert m["sl_minus_seqft"]["mean"] == pytest.approx(m["sl"][0] - m["seqft"][0])
    # the measured effect of classifier alignment (0.93 vs 0.53 at this scale): the aligned heads recover the
    # first domain's classes that the stage-1 heads forgot. The slow learner alone does not beat SeqFT at this
    # scale (2 epochs on 10 sentences per class), so the claim is not held here; the full scale measures it.
    assert m["slca_minus_sl"]["mean"] >= 0.2 and m["slca"][0] > 0.8
    assert claim.held is False and m["sl_minus_seqft"]["held"] is False
    # the verdict on known cases (5 sentences per class, the slow-learner margin waived): with alignment it is
    # held; with alignment switched off (the aligned heads are the stage-1 heads) SL+CA = SL and it is not
    small = ("data.max_per_class=5", "min_sl_gain=-1.0")
    with_ca = reproduce("slca", sets=small)
    assert with_ca.held is True and with_ca.measured["slca_minus_sl"]["mean"] >= 0.2
    monkeypatch.setattr(SLCA, "_align", lambda self, index: None)
    without_ca = reproduce("slca", sets=small)
    assert without_ca.measured["slca"] == without_ca.measured["sl"] and without_ca.held is False
