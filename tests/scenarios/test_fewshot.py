"""Few-shot class-incremental (FSCIL) streams."""

import numpy as np
import pytest

from lifelong.data import make_blobs
from lifelong.errors import ConfigError, DataError
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.scenarios import few_shot_incremental, make_scenario
from lifelong.scenarios.fewshot import session_accuracies


@pytest.fixture(scope="module")
def data():
    return make_blobs(num_classes=20, per_class=30, dim=8, seed=0)  # 24 train / 6 test per class


def test_base_session_is_full_then_n_way_k_shot(data):
    s = few_shot_incremental(data, base_classes=10, ways=2, shots=3, sessions=5, seed=0)
    assert len(s) == 6 and s.num_classes == 20 and s.scenario == "few-shot-incremental"
    assert s[0].classes == list(range(10)) and len(s[0].train_idx) == 10 * 24
    for t in range(1, 6):
        x, y = s[t].train_tensors()
        assert s[t].classes == [10 + 2 * (t - 1), 11 + 2 * (t - 1)]
        assert sorted(np.bincount(y.numpy(), minlength=20)[s[t].classes].tolist()) == [3, 3]
        _, yt = s[t].test_tensors()
        assert len(yt) == 2 * 6 and set(yt.tolist()) == set(s[t].classes)  # full test sets
    seen = np.concatenate([e.train_idx for e in s])
    assert len(seen) == len(set(seen.tolist()))


def test_defaults_fill_the_classes_and_seeds_are_deterministic(data):
    s = few_shot_incremental(data, ways=5, shots=5, sessions=2)
    assert s.params["base_classes"] == 10 and len(s) == 3
    s2 = few_shot_incremental(data)
    assert s2.params["base_classes"] == 12 and s2.params["sessions"] == 1
    a, b = few_shot_incremental(data, 10, 2, 3, 5, seed=1), few_shot_incremental(data, 10, 2, 3, 5, seed=1)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != few_shot_incremental(data, 10, 2, 3, 5, seed=2).fingerprint()
    nat = few_shot_incremental(data, 10, 2, 3, 5, seed=-1)
    assert nat.class_order == list(range(20))
    assert nat.fingerprint() == few_shot_incremental(data, 10, 2, 3, 5, seed=-1).fingerprint()


def test_bad_settings_are_refused(data):
    with pytest.raises(ConfigError, match="classes"):
        few_shot_incremental(data, base_classes=15, ways=5, sessions=2)
    with pytest.raises(DataError, match="shots"):
        few_shot_incremental(data, base_classes=10, ways=5, shots=25, sessions=1)
    with pytest.raises(ConfigError, match="ways"):
        few_shot_incremental(data, ways=0)


def test_registry_and_a_prototype_learner_run_end_to_end(data):
    s = make_scenario("few-shot-incremental", data, base_classes=10, ways=5, shots=5, sessions=2)
    res = run(s, make_learner("ncm"), progress=False)
    R = res.accuracy_matrix
    assert R.shape == (3, 3)
    accs = session_accuracies(R, s.describe()["test_sizes"])
    assert len(accs) == 3 and accs[0] == pytest.approx(R[0, 0])
    assert accs[2] == pytest.approx((R[2] * np.array([60, 30, 30])).sum() / 120)
    assert accs[-1] > 0.5  # blobs are separable even from 5 shots


def test_session_accuracies_on_a_hand_made_matrix():
    R = [[0.9, 0.0], [0.8, 0.5]]
    assert session_accuracies(R, [60, 20]) == pytest.approx([0.9, (0.8 * 60 + 0.5 * 20) / 80])
    with pytest.raises(DataError):
        session_accuracies(R, [1, 2, 3])
