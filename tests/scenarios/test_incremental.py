"""Class-, task-, domain-incremental and online streams."""

import numpy as np
import pytest
import torch

from lifelong.data import load_dataset
from lifelong.errors import ConfigError
from lifelong.scenarios import make_scenario


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_class_incremental_partitions_classes(digits):
    s = make_scenario("class-incremental", digits, tasks=5, seed=0)
    assert len(s) == 5 and s.num_classes == 10
    assert [e.classes for e in s] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    total = sum(len(e.train_idx) for e in s)
    assert total == len(digits.y_train)
    for e in s:
        x, y = e.train_tensors()
        assert set(y.unique().tolist()) == set(e.classes)
        assert e.task_id is None
    # stream ids follow the class order
    x, y = s[0].test_tensors()
    orig = digits.y_test[torch.as_tensor(s[0].test_idx)]
    assert torch.equal(torch.as_tensor(s.class_order)[y], orig)


def test_class_order_seed_and_increments(digits):
    a = make_scenario("class-incremental", digits, tasks=5, seed=1)
    b = make_scenario("class-incremental", digits, tasks=5, seed=2)
    assert a.class_order != b.class_order
    natural = make_scenario("class-incremental", digits, tasks=2, seed=-1)
    assert natural.class_order == list(range(10))
    inc = make_scenario("class-incremental", digits, increments=[4, 3, 3])
    assert [len(e.classes) for e in inc] == [4, 3, 3]
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == make_scenario("class-incremental", digits, tasks=5, seed=1).fingerprint()


def test_index_based_no_copies(digits):
    s = make_scenario("class-incremental", digits, tasks=5)
    assert all(e.dataset is digits for e in s)
    assert s[0].train_idx.dtype == np.int64 or s[0].train_idx.dtype == np.intp


def test_task_incremental_gives_task_ids(digits):
    s = make_scenario("task-incremental", digits, tasks=5)
    assert [e.task_id for e in s] == [0, 1, 2, 3, 4]


def test_domain_incremental_permuted_and_rotated(digits):
    s = make_scenario("domain-incremental", digits, tasks=3, kind="permuted")
    x0, y0 = s[0].test_tensors()
    x1, y1 = s[1].test_tensors()
    assert torch.equal(y0, y1) and not torch.equal(x0, x1)
    assert torch.allclose(x0.flatten(1).sort(1).values, x1.flatten(1).sort(1).values)  # a permutation
    assert all(e.classes == list(range(10)) for e in s)
    r = make_scenario("domain-incremental", digits, tasks=3, kind="rotated", max_degrees=90)
    xr0, _ = r[0].test_tensors()
    assert torch.allclose(xr0, x0, atol=1e-5)  # 0 degrees is identity
    xr2, _ = r[2].test_tensors()
    assert not torch.allclose(xr2, x0, atol=1e-2)


def test_online_stream_is_single_pass_and_blurry(digits):
    s = make_scenario("online", digits, tasks=5, batch_size=10)
    assert all(e.online and e.batch_size == 10 for e in s)
    assert [e.classes for e in s] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    b = make_scenario("online", digits, tasks=5, batch_size=10, blurry=0.2)
    assert len(b[0].classes) > 2  # other tasks' classes leak in
    assert sum(len(e) for e in b) == len(digits.y_train)


def test_bad_scenarios(digits):
    with pytest.raises(ConfigError, match="at most 10"):
        make_scenario("class-incremental", digits, tasks=11)
    with pytest.raises(ConfigError, match="sum to"):
        make_scenario("class-incremental", digits, increments=[5, 4])
    with pytest.raises(ConfigError, match="takes no argument"):
        make_scenario("class-incremental", digits, taks=3)
    with pytest.raises(ConfigError, match="choose one of"):
        make_scenario("nope", digits)
    with pytest.raises(ConfigError):
        make_scenario("online", digits, blurry=1.0)
    with pytest.raises(ConfigError, match="permutation"):
        make_scenario("class-incremental", digits, class_order=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
