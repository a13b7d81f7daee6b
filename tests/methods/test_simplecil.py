"""SimpleCIL (arXiv 2303.07338) and the shared prototype head."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data import make_blobs
from lifelong.errors import ConfigError, DataError
from lifelong.heads.prototype import PrototypeHead, encode_in_batches
from lifelong.methods import make_learner
from lifelong.methods.simplecil import SimpleCIL, SimpleCILConfig
from lifelong.papers.simplecil import clinc_available
from lifelong.scenarios import class_incremental


@pytest.fixture
def data():
    return make_blobs(num_classes=6, per_class=30, dim=8, spread=2.0, seed=1)


def _class_means(x, y, k):
    return torch.stack([x[y == c].double().mean(0) for c in range(k)])


def test_prototype_head_means_scores_and_state():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(50) % 5
    head = PrototypeHead(6)
    head.update(x[:20], y[:20])
    head.update(x[20:], y[20:])  # incremental sums give the one-pass means
    means = head.means()
    torch.testing.assert_close(means[:5], _class_means(x, y, 5))
    assert torch.equal(means[5], torch.zeros(4, dtype=torch.float64))  # unseen class
    q = torch.randn(3, 4)
    torch.testing.assert_close(
        head.scores(q, "cosine")[:, :5], F.normalize(q.double(), dim=1) @ F.normalize(means[:5], dim=1).T
    )
    torch.testing.assert_close(head.scores(q, "euclidean"), -torch.cdist(q.double(), means))
    other = PrototypeHead(6)
    other.load(head.state())
    assert torch.equal(other.means(), means)
    with pytest.raises(DataError, match="dimensions"):
        head.update(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(DataError, match=r"\[0, 6\)"):
        head.update(torch.randn(2, 4), torch.tensor([0, 6]))
    with pytest.raises(ConfigError, match="metric"):
        head.scores(q, "manhattan")


def test_prototypes_equal_class_means_and_scores_are_cosine(data):
    stream = class_incremental(data, tasks=3, seed=0)
    learner = make_learner("simplecil")
    xs, ys = [], []
    for e in stream:
        learner.learn(e)
        x, y = e.train_tensors()
        xs.append(x), ys.append(y)
    x, y = torch.cat(xs), torch.cat(ys)
    protos = learner.prototypes()
    torch.testing.assert_close(protos, _class_means(x, y, 6))  # mean of raw (not normalised) embeddings
    xt, _ = stream[0].test_tensors()
    expected = F.normalize(xt.double(), dim=1) @ F.normalize(protos, dim=1).T
    torch.testing.assert_close(learner.predict(xt), expected.float())
    assert learner.samples_seen == len(y)


def test_unseen_classes_score_minus_inf(data):
    stream = class_incremental(data, tasks=3, seed=0)
    learner = make_learner("simplecil")
    learner.learn(stream[0])
    xt, _ = stream[0].test_tensors()
    assert learner.predict(xt).shape == (len(xt), 2)
    learner.learn(stream[2])  # skip experience 1: its classes stay unseen
    s = learner.predict(xt)
    assert s.shape == (len(xt), 6) and torch.isinf(s[:, 2:4]).all() and torch.isfinite(s[:, [0, 1, 4, 5]]).all()


def test_predictions_do_not_depend_on_class_order(data):
    """No training: the same prototypes whatever the order (the paper's SimpleCIL is order-free)."""
    labels = []
    for seed in (0, 1, 2):
        stream = class_incremental(data, tasks=3, seed=seed)
        learner = make_learner("simplecil")
        for e in stream:
            learner.learn(e)
        pred = learner.predict(data.x_test).argmax(1)
        labels.append(torch.as_tensor(stream.class_order)[pred])  # back to the dataset's labels
    assert torch.equal(labels[0], labels[1]) and torch.equal(labels[0], labels[2])


def test_frozen_encoder_plugs_in(data):
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(8, 5), nn.Tanh())
    before = [p.clone() for p in encoder.parameters()]
    stream = class_incremental(data, tasks=2, seed=0)
    learner = SimpleCIL(SimpleCILConfig(batch_size=7), encoder=encoder)
    for e in stream:
        learner.learn(e)
    assert all(not p.requires_grad for p in encoder.parameters()) and not encoder.training
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters()))
    x, y = torch.cat([e.train_tensors()[0] for e in stream]), torch.cat([e.train_tensors()[1] for e in stream])
    with torch.no_grad():
        f = encoder(x)
    torch.testing.assert_close(learner.prototypes(), _class_means(f, y, 6))
    assert encode_in_batches(encoder, x, 7).shape == (len(x), 5)


def test_config_errors():
    with pytest.raises(ConfigError, match="metric"):
        make_learner("simplecil", {"metric": "dot"})
    with pytest.raises(ConfigError, match="callable"):
        SimpleCIL(SimpleCILConfig(), encoder=3)


@pytest.mark.skipif(not clinc_available(), reason="CLINC150 files not found (set LIFELONG_DATA)")
def test_quick_reproduction_paper_43():
    from lifelong.papers import format_claim, reproduce

    claim = reproduce("simplecil")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "simplecil" and claim.scale == "quick" and m["classes"] == 60
    # what reliably holds at this scale (0.894 vs 0.208, any CPU kernel): prototypes crush SeqFT,
    # which learned each experience well
    assert m["simplecil"] >= m["seqft_linear"] + 0.50 and m["seqft_linear_just_learned"] > 0.8
    assert m["simplecil"] > 0.85 and m["joint_logistic_regression"] >= m["simplecil"]
    # APER adapted inside the encoder and was paired with SimpleCIL on the same class order
    gain = m["domains_aper_adaptformer_minus_simplecil"]
    assert gain["n"] == 1 and gain["mean"] == pytest.approx(
        m["domains_aper_adaptformer"][0] - m["domains_simplecil"][0]
    )
    # SeqFT's lr was picked on the validation split, then paired with SimpleCIL per seed
    assert m["seqft_linear_lr"] in (0.03, 0.1, 0.3, 1.0, 3.0) and len(m["seqft_linear_val_accuracy_by_lr"]) == 5
    assert m["simplecil_minus_seqft_paired/mean"] == pytest.approx(m["simplecil"] - m["seqft_linear"], abs=1e-4)
    assert claim.held == (m["simplecil"] >= m["seqft_linear"] + 0.30 and gain["held"])
    # the verdict reads the numbers: margins no run can meet flip it (small stream)
    small = ("data.domains=[0,1]", "data.max_per_class=5")
    assert reproduce("simplecil", sets=("min_gain_over_seqft=1.01", *small)).held is False
    assert reproduce("simplecil", sets=("aper.gap_margin=1.01", *small)).held is False
    assert reproduce("simplecil", sets=("aper.gap_margin=-1.0", *small)).held is True
    verdict = [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]
    assert verdict == ["HELD" if claim.held else "NOT HELD"]  # "HELD" alone is also inside "NOT HELD"
