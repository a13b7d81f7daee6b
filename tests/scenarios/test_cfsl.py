"""CFSL streams and the instance test (arXiv 2209.07863, Kowadlo et al. 2024)."""

import numpy as np
import pytest
import torch

from lifelong.data import load_digits, make_blobs
from lifelong.errors import ConfigError, DataError
from lifelong.scenarios import make_scenario
from lifelong.scenarios.cfsl import cfsl, corrupt, make_glyphs, query_accuracy


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_class_test_support_sets_are_n_way_k_shot():
    data = make_blobs(num_classes=12, per_class=20, dim=8, seed=0)
    s = make_scenario("cfsl", data, classes=10, ways=4, shots=3, seed=0)
    assert s.scenario == "cfsl" and s.num_classes == 10 and len(s) == 3  # 4 + 4 + 2
    assert [e.classes for e in s] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for e in s:
        _, y = e.train_tensors()
        assert np.bincount(y.numpy(), minlength=10)[e.classes].tolist() == [3] * len(e.classes)
        _, yt = e.test_tensors()
        assert set(yt.tolist()) == set(e.classes)
    assert s.fingerprint() == cfsl(data, classes=10, ways=4, shots=3, seed=0).fingerprint()
    assert s.fingerprint() != cfsl(data, classes=10, ways=4, shots=3, seed=1).fingerprint()


def test_instance_test_queries_are_corrupted_copies(digits):
    s = cfsl(digits, classes=6, ways=3, instance=True, queries=4, occlusion=0.25, noise=0.0, seed=0)
    assert len(s) == 2 and s.params["instance"] and s[0].dataset.num_classes == 6
    x, y = s[0].train_tensors()
    assert y.tolist() == [0, 1, 2]  # one clean image per instance
    xt, yt = s[0].test_tensors()
    assert len(yt) == 3 * 4
    clean = x[yt].reshape(len(yt), -1)
    q = xt.reshape(len(yt), -1)
    zeroed = (q == 0) & (clean != 0)
    assert ((q == clean) | (q == 0)).all()  # occlusion only zeroes pixels (noise 0)
    assert zeroed.any()
    assert ((q == 0).sum(1) >= 16).all()  # round(0.25 * 64) pixels masked (some already 0)


def test_corrupt_strength_and_determinism():
    x = torch.ones(5, 1, 8, 8)
    a = corrupt(x, 0.5, 0.0, torch.Generator().manual_seed(0))
    assert ((a == 0).reshape(5, -1).sum(1) == 32).all()
    b = corrupt(x, 0.5, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(b, corrupt(x, 0.5, 0.3, torch.Generator().manual_seed(1)))
    assert torch.equal(corrupt(x, 0.0, 0.0, torch.Generator()), x)
    with pytest.raises(ConfigError):
        corrupt(x, 1.0, 0.0, torch.Generator())


def test_glyphs_give_many_distinct_classes():
    d = make_glyphs(num_classes=40, per_class=4, seed=0)
    assert d.num_classes == 40 and d.input_shape == (1, 8, 8)
    means = torch.stack([d.x_train[d.y_train == c].mean(0).flatten() for c in range(40)])
    assert torch.cdist(means, means).add(torch.eye(40) * 1e3).min() > 0.5  # templates differ
    assert torch.equal(make_glyphs(num_classes=40, per_class=4, seed=0).x_test, d.x_test)


def test_bad_input_raises(digits):
    with pytest.raises(ConfigError, match="classes"):
        cfsl(digits, classes=11)
    with pytest.raises(ConfigError):
        cfsl(digits, classes=0)
    with pytest.raises(DataError, match="shots"):
        cfsl(make_blobs(num_classes=4, per_class=5, dim=2, seed=0), classes=4, shots=10)
    with pytest.raises(DataError):
        query_accuracy(np.ones((2, 2)), [1, 2, 3])


def test_query_accuracy_weights_by_test_size():
    assert query_accuracy([[1.0, 0.0], [0.5, 1.0]], [10, 30]) == pytest.approx((5 + 30) / 40)


def test_class_repeats_present_each_group_in_consecutive_sets_with_fresh_shots():
    data = make_blobs(num_classes=6, per_class=30, dim=4, seed=0)
    once = cfsl(data, classes=6, ways=3, shots=2, seed=0)
    s = cfsl(data, classes=6, ways=3, shots=2, seed=0, repeats=3)
    assert len(s) == 6 and s.params["repeats"] == 3 and "repeats" not in once.params
    assert [e.classes for e in s] == [[0, 1, 2]] * 3 + [[3, 4, 5]] * 3
    trains = [set(e.train_idx.tolist()) for e in s]
    assert all(len(t) == 6 for t in trains)
    assert not (trains[0] & trains[1]) and not (trains[1] & trains[2])  # fresh shots at each repeat
    tests = [e.test_tensors()[1] for e in s]
    assert sum(len(t) for t in tests) == sum(len(e.test_tensors()[1]) for e in once)  # a partition of the test set
    tests_idx = [set(e.test_idx.tolist()) for e in s[:3]]
    assert not (tests_idx[0] & tests_idx[1])
    inst = cfsl(load_digits(), classes=4, ways=2, instance=True, queries=4, seed=0, repeats=2)
    assert len(inst) == 4 and torch.equal(inst[0].train_tensors()[0], inst[1].train_tensors()[0])  # same image
    with pytest.raises(ConfigError, match="repeats"):
        cfsl(data, classes=6, repeats=0)
    with pytest.raises(DataError, match="repeats"):
        cfsl(load_digits(), classes=4, ways=2, instance=True, queries=2, seed=0, repeats=3)
