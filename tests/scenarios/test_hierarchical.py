"""Hierarchical label expansion streams (HLE: coarse labels first, fine labels later)."""

import numpy as np
import pytest
import torch

from lifelong.data import Dataset, make_blobs
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.scenarios import hierarchical, make_scenario
from lifelong.scenarios.hierarchical import class_levels, class_parents

PARENT = [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.fixture(scope="module")
def data():
    d = make_blobs(num_classes=9, per_class=25, dim=8, seed=0)  # 20 train / 5 test per class
    return Dataset(
        d.name,
        d.x_train,
        d.y_train,
        d.x_test,
        d.y_test,
        d.class_names,
        coarse_labels=PARENT,
        meta={"domain_names": ["a", "b", "c"]},
    )


def test_coarse_first_then_one_coarse_class_expanded_per_experience(data):
    s = hierarchical(data, coarse_fraction=0.4, seed=-1)
    assert len(s) == 4 and s.num_classes == 12 and s.class_names[:3] == ["a", "b", "c"]
    assert class_levels(s) == [0] * 3 + [1] * 9
    parents = class_parents(s)
    x0, y0 = s[0].train_tensors()
    assert s[0].task_id == 0 and set(y0.tolist()) == {0, 1, 2} and len(y0) == 9 * 8
    assert torch.equal(x0, data.x_train[torch.as_tensor(s[0].train_idx)])

    def storage(t):
        return t.untyped_storage().data_ptr()

    for e in s:  # inputs are shared, not copied: every experience reads the source dataset's memory
        assert storage(e.dataset.x_train) == storage(data.x_train)
        assert storage(e.dataset.x_test) == storage(data.x_test)
    assert torch.equal(y0, torch.tensor(PARENT)[data.y_train[torch.as_tensor(s[0].train_idx)]])
    _, yt0 = s[0].test_tensors()
    assert len(yt0) == len(data.y_test) and yt0.max() < 3  # coarse accuracy on the whole test set
    for k in range(1, 4):
        _, y = s[k].train_tensors()
        assert s[k].task_id == 1 and len(y) == 3 * 12 and y.min() >= 3
        assert {parents[c] for c in y.tolist()} == {k - 1}  # domain by domain, natural order
        _, yt = s[k].test_tensors()
        assert len(yt) == 15 and set(yt.tolist()) == set(s[k].classes)
    idx = np.concatenate([e.train_idx for e in s])
    assert sorted(idx.tolist()) == list(range(len(data.y_train)))  # every example once, at one level
    assert s.params["experience_levels"] == [0, 1, 1, 1]


def test_expand_all_online_and_hidden_levels(data):
    s = hierarchical(data, expand="all", level_task_ids=False, batch_size=10, seed=3)
    assert len(s) == 2 and s[1].classes == list(range(3, 12))
    assert all(e.online and e.batch_size == 10 and e.task_id is None for e in s)
    assert (
        s.fingerprint() == hierarchical(data, expand="all", level_task_ids=False, batch_size=10, seed=3).fingerprint()
    )


def test_per_level_evaluation_with_a_prototype_learner(data):
    s = make_scenario("hierarchical", data, seed=0)
    R = run(s, make_learner("ncm"), progress=False).accuracy_matrix
    assert R.shape == (4, 4)
    assert R[0, 0] > 0.6  # coarse accuracy after the coarse experience (chance 1/3)
    assert R[-1, 0] > 0.6 and R[-1, 1:].mean() > 0.5  # both levels are still scored after expansion


def test_needs_a_hierarchy(data):
    flat = make_blobs(num_classes=4, per_class=10, dim=4)
    with pytest.raises(ConfigError, match="coarse_labels"):
        hierarchical(flat)
    s = hierarchical(flat, coarse_labels=[0, 0, 1, 1])
    assert s.class_names[:2] == ["coarse0", "coarse1"]
    with pytest.raises(ConfigError, match="without gaps"):
        hierarchical(flat, coarse_labels=[0, 0, 2, 2])
    with pytest.raises(ConfigError, match="coarse_fraction"):
        hierarchical(data, coarse_fraction=1.0)
    with pytest.raises(ConfigError, match="expand"):
        hierarchical(data, expand="sideways")
