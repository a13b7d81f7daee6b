"""EASE (arXiv 2403.12030) on features: one adapter per experience, completed prototypes, weighted ensemble."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.methods.ease import complete_prototypes
from lifelong.scenarios import class_incremental


def test_old_prototypes_in_new_subspaces_are_similarity_weighted_bridges():
    g = torch.Generator().manual_seed(0)
    p0, p1 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    p1[:2] = 0.0  # classes 0, 1 (task 0) have no data-based prototype in subspace 1
    out = complete_prototypes([p0, p1], torch.tensor([0, 0, 1, 1]), [[0, 1], [2, 3]])
    sim = torch.softmax(F.normalize(p0[:2], dim=1) @ F.normalize(p0[2:], dim=1).T, dim=1)
    torch.testing.assert_close(out[1][:2], sim @ p1[2:])
    assert torch.equal(out[1][2:], p1[2:]) and torch.equal(out[0], p0)  # real prototypes untouched


@pytest.fixture
def stream():
    data = make_blobs(num_classes=6, per_class=30, dim=8, spread=2.0, seed=1)
    return class_incremental(data, tasks=3, seed=0)


def test_earlier_adapters_are_frozen_and_predictions_are_the_weighted_ensemble(stream):
    ease = make_learner("ease", {"epochs": 3, "lr": 0.05, "alpha": 0.3}, seed=0)
    ease.learn(stream[0])
    first = {k: v.clone() for k, v in ease.adapters[0].state_dict().items()}
    ease.learn(stream[1])
    ease.learn(stream[2])
    assert len(ease.adapters) == 3
    for k, v in ease.adapters[0].state_dict().items():
        assert torch.equal(v, first[k])
    assert any(not torch.equal(v, first[k]) for k, v in ease.adapters[2].state_dict().items())
    w = ease.subspace_weights()
    assert torch.equal(w[ease.task_of, torch.arange(6)], torch.ones(6))
    assert torch.allclose(w[w != 1.0], torch.tensor(0.15))  # alpha / (3 - 1)
    x, _ = stream[2].test_tensors()
    expected = sum(
        (F.normalize(a(x), dim=1) @ F.normalize(p, dim=1).T) * w[j]
        for j, (a, p) in enumerate(zip(ease.adapters, ease.protos))
    )
    torch.testing.assert_close(ease.predict(x), expected.detach())


def test_it_learns_every_experience(stream):
    ease = make_learner("ease", {"epochs": 3, "lr": 0.05}, seed=0)
    for e in stream:
        ease.learn(e)
    x = torch.cat([e.test_tensors()[0] for e in stream])
    y = torch.cat([e.test_tensors()[1] for e in stream])
    assert (ease.predict(x).argmax(1) == y).float().mean() > 0.8


def test_bad_settings_raise():
    with pytest.raises(ConfigError, match="adapter"):
        make_learner("ease", {"adapter": "lora"})
    with pytest.raises(ConfigError, match="alpha"):
        make_learner("ease", {"alpha": -0.1})
