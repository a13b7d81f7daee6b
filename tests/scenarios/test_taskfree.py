"""The task-free scenario (TAME's task-agnostic setting): hidden boundaries, known to the evaluation only."""

import json

import numpy as np
import pytest
import torch

from lifelong.data import load_dataset
from lifelong.errors import ConfigError
from lifelong.scenarios import SCENARIOS, make_scenario
from lifelong.scenarios.taskfree import true_boundaries


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_registered_and_hides_task_identity(digits):
    assert "task-free" in SCENARIOS
    s = make_scenario("task-free", digits, tasks=5, batch_size=7, seed=0)
    assert s.scenario == "task-free" and len(s) == 5
    for e in s:
        assert e.task_id is None and e.online and e.batch_size == 7
    json.dumps(s.describe())  # the params (boundaries included) are JSON-able


def test_boundaries_are_segment_starts_in_examples(digits):
    s = make_scenario("task-free", digits, tasks=5, passes=3, order=[0, 1, 2, 3, 4, 0], seed=1)
    lengths = [len(e) for e in s]
    assert s.params["boundaries"] == list(np.cumsum(lengths)[:-1])
    assert true_boundaries(s) == s.params["boundaries"]
    assert s.params["segment_tasks"] == [0, 1, 2, 3, 4, 0]
    assert s.params["stream_length"] == sum(lengths)


def test_passes_repeat_each_example_in_fresh_shuffles(digits):
    one = make_scenario("task-free", digits, tasks=5, passes=1, seed=0)
    three = make_scenario("task-free", digits, tasks=5, passes=3, seed=0)
    for a, b in zip(one, three):
        n = len(a)
        assert len(b) == 3 * n
        chunks = [b.train_idx[i * n : (i + 1) * n] for i in range(3)]
        assert all(sorted(c.tolist()) == sorted(a.train_idx.tolist()) for c in chunks)
        assert not np.array_equal(chunks[0], chunks[1])


def test_segments_hold_only_their_task_and_recur(digits):
    s = make_scenario("task-free", digits, tasks=5, order=[0, 1, 2, 3, 4, 0], seed=0)
    for e in s:
        _, y = e.train_tensors()
        assert set(y.unique().tolist()) == set(e.classes)
        _, yt = e.test_tensors()
        assert set(yt.unique().tolist()) == set(e.classes)
    first, last = s[0], s[5]
    assert first.classes == last.classes
    assert np.array_equal(first.test_idx, last.test_idx)
    assert not np.array_equal(first.train_idx, last.train_idx)  # a new shuffle of the same examples
    assert sorted(first.train_idx.tolist()) == sorted(last.train_idx.tolist())


def test_same_seed_same_stream_and_class_order_like_class_incremental(digits):
    a = make_scenario("task-free", digits, tasks=5, seed=3)
    b = make_scenario("task-free", digits, tasks=5, seed=3)
    ci = make_scenario("class-incremental", digits, tasks=5, seed=3)
    assert a.fingerprint() == b.fingerprint()
    assert a.class_order == ci.class_order
    x, y = a[2].train_tensors()
    assert torch.equal(y.unique(), torch.tensor(ci[2].classes))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"passes": 0}, "passes"),
        ({"order": []}, "order"),
        ({"order": [0, 5]}, "outside"),
        ({"tasks": 11}, "cannot split"),
    ],
)
def test_bad_arguments_name_the_problem(digits, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_scenario("task-free", digits, **kwargs)
