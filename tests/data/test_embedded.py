"""Embedded datasets and the stratified split."""

import numpy as np
import pytest
import torch

from lifelong.data import Dataset, list_datasets, load_dataset, stratified_split
from lifelong.errors import ConfigError, DataError


def test_digits_and_mnist_shapes():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.y_train) + len(d.y_test) == 1797
    m = load_dataset("mnist")
    assert m.input_shape == (1, 28, 28)
    assert len(m.y_train) + len(m.y_test) == 5000
    assert float(m.x_train.max()) <= 1.0 and float(m.x_train.min()) >= 0.0


def test_split_is_stratified_and_deterministic():
    m1, m2 = load_dataset("mnist", seed=3), load_dataset("mnist", seed=3)
    assert torch.equal(m1.y_test, m2.y_test)
    counts = torch.bincount(m1.y_test)
    assert (counts == 100).all()  # 500 per class, 20% to test
    other = load_dataset("mnist", seed=4)
    assert not torch.equal(m1.x_test, other.x_test)


def test_stratified_split_disjoint_and_complete():
    y = np.repeat(np.arange(3), [10, 20, 30])
    tr, te = stratified_split(y, 0.2, seed=0)
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == len(y)
    assert np.bincount(y[te]).tolist() == [2, 4, 6]


def test_blobs_are_separable_and_seeded():
    a, b = load_dataset("blobs", seed=1), load_dataset("blobs", seed=1)
    assert torch.equal(a.x_train, b.x_train)
    assert a.num_classes == 10 and a.input_shape == (16,)


def test_bad_input():
    with pytest.raises(ConfigError, match="choose one of"):
        load_dataset("nope")
    with pytest.raises(DataError, match="labels must lie"):
        Dataset("x", torch.zeros(2, 3), torch.tensor([0, 5]), torch.zeros(1, 3), torch.tensor([0]), ["a", "b"])
    with pytest.raises(DataError, match="empty"):
        Dataset("x", torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(1, 3), torch.tensor([0]), ["a"])
    with pytest.raises(DataError, match="differ in shape"):
        Dataset("x", torch.zeros(2, 3), torch.tensor([0, 0]), torch.zeros(1, 4), torch.tensor([0]), ["a"])
    with pytest.raises(DataError):
        stratified_split(np.zeros(4), 1.5, 0)
    assert "mnist" in list_datasets()
