"""The run loop and experiment folders: results, errors, refusal, resume."""

import json

import numpy as np
import pytest
import torch

from lifelong.data import Dataset, make_blobs
from lifelong.errors import DataError, NonFiniteLossError, RunDirError
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.runner import run_experiment
from lifelong.scenarios import class_incremental, domain_incremental, task_incremental

FAST = {"epochs": "1", "hidden": "16"}


def test_run_fills_matrix_and_costs(blobs):
    stream = class_incremental(blobs, tasks=2, seed=0)
    r = run(stream, make_learner("finetune", FAST), progress=False)
    assert r.accuracy_matrix.shape == (2, 2) and r.status == "complete"
    assert r.initial_accuracy.tolist() == [0.0, 0.0]  # nothing seen: nothing predictable
    assert r.accuracy_matrix[0, 1] == 0.0  # future classes cannot be predicted
    assert len(r.learn_seconds) == 2 and all(t > 0 for t in r.learn_seconds)
    assert r.samples_seen == [len(stream[0]), len(stream[0]) + len(stream[1])]
    assert r.trainable_parameters == r.total_parameters > 0 and r.peak_memory_mb > 0
    assert set(r.metrics) == {
        "final_average_accuracy",
        "average_incremental_accuracy",
        "forgetting",
        "backward_transfer",
        "forward_transfer",
    }


def test_task_incremental_masks_to_task(blobs):
    stream = task_incremental(blobs, tasks=2, seed=0)
    learner = make_learner("finetune", FAST)
    r = run(stream, learner, progress=False)
    x, _ = stream[0].test_tensors()
    s = learner.predict(x, task_id=0)
    assert torch.isinf(s[:, stream[1].classes]).all()
    # task-incremental accuracy on old task is at least class-incremental accuracy
    ci = run(class_incremental(blobs, tasks=2, seed=0), make_learner("finetune", FAST), progress=False)
    assert r.accuracy_matrix[1, 0] >= ci.accuracy_matrix[1, 0]


def test_domain_incremental_forward_transfer_defined():
    data = make_blobs(num_classes=3, per_class=40, dim=6, seed=1)
    stream = domain_incremental(data, tasks=2)
    r = run(stream, make_learner("finetune", FAST), progress=False)
    # Before learning, a learner scores no class, so b_j = 0 and FWT is the accuracy on the
    # next domain before training on it (zero-shot transfer across domains).
    assert r.initial_accuracy.tolist() == [0.0, 0.0]
    assert r.metrics["forward_transfer"] == pytest.approx(r.accuracy_matrix[0, 1])
    assert r.metrics["forward_transfer"] > 0.2


def test_nan_inputs_are_refused_before_learning(blobs, tmp_path):
    stream = class_incremental(blobs, tasks=2, seed=0)
    original = stream[1].train_tensors

    def poisoned():
        x, y = original()
        return torch.full_like(x, float("nan")), y

    stream[1].train_tensors = poisoned
    with pytest.raises(DataError, match="training split of experience 1 holds NaN"):
        run(stream, make_learner("finetune", FAST), run_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match=r"d: the train split holds NaN or infinite values in 2 input\(s\)"):
        Dataset(
            "d",
            torch.tensor([[1.0], [float("inf")], [float("nan")]]),
            torch.tensor([0, 1, 1]),
            torch.ones(1, 1),
            torch.tensor([0]),
            ["a", "b"],
        )


@pytest.mark.parametrize("method, setting, value", [("ewc", "ewc_lambda", "1e38"), ("finetune", "lr", "1e12")])
def test_divergence_stops_keeps_finished_experiences_and_names_the_setting(blobs, tmp_path, method, setting, value):
    stream = class_incremental(blobs, tasks=2, seed=0)
    learner = make_learner(method, {"hidden": "16", setting: value})
    with pytest.raises(NonFiniteLossError, match=f"likely cause: method.{setting}="):
        run(stream, learner, run_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "failed" and "loss became" in saved["error"]
    assert len(saved["accuracy_matrix"]) == 1
    if setting != "lr":
        assert "method.lr" not in saved["error"]


def test_default_settings_diverging_point_at_the_lr(blobs):
    from lifelong.evaluation.loop import divergence_hint

    assert divergence_hint(make_learner("finetune")) == "lower method.lr (now 0.01)"
    # the defaults a run resolved for its data are the reference, not the field defaults
    assert divergence_hint(make_learner("finetune", data_kind="pixels")) == "lower method.lr (now 0.05)"
    hint = divergence_hint(make_learner("finetune", {"lr": 0.5}, data_kind="pixels"))
    assert "method.lr=0.5 (default 0.05 on pixels data)" in hint


class _BadPredictor:
    def __init__(self, kind):
        self.kind = kind

    def learn(self, experience):
        pass

    def predict(self, x, task_id=None):
        if self.kind == "nan":
            return torch.full((len(x), 2), float("nan"))
        return torch.zeros(len(x), 99)


@pytest.mark.parametrize("kind, message", [("nan", "NaN scores"), ("columns", "99 score columns but the stream has 4")])
def test_bad_predictions_fail_loudly(blobs, tmp_path, kind, message):
    from lifelong.errors import LearnerError

    stream = class_incremental(blobs, tasks=2, seed=0)
    with pytest.raises(LearnerError, match=message):
        run(stream, _BadPredictor(kind), progress=False)


def test_seeds_must_fit_every_generator(blobs):
    from lifelong.errors import ConfigError

    stream = class_incremental(blobs, tasks=2, seed=0)
    for bad in (2**32, -1, True):
        with pytest.raises(ConfigError, match=r"seeds must be integers in \[0, 4294967295\]"):
            run(stream, make_learner("ncm"), seed=bad, progress=False)


def test_labels_out_of_range_and_shape_mismatch(blobs):
    stream = class_incremental(blobs, tasks=2, seed=0)
    learner = make_learner("finetune", FAST)
    learner.prepare(stream[0].input_shape, 3)  # too few classes for the stream
    with pytest.raises(DataError, match="labels outside"):
        learner.learn(stream[1])
    other = class_incremental(make_blobs(num_classes=4, per_class=20, dim=5), tasks=2)
    learner = make_learner("finetune", FAST)
    learner.learn(stream[0])
    with pytest.raises(DataError, match="shape"):
        learner.learn(other[1])


def test_empty_experience_is_refused():
    data = Dataset(
        "tiny", torch.randn(4, 2), torch.tensor([0, 0, 0, 0]), torch.randn(2, 2), torch.tensor([0, 1]), ["a", "b"]
    )
    with pytest.raises(DataError, match="no training examples"):
        class_incremental(data, tasks=2, seed=-1)


def _exp(tmp_path, **kw):
    args = dict(
        data="blobs",
        methods=["finetune", "ncm"],
        seeds=[0, 1],
        out=tmp_path,
        name="t",
        overrides={"finetune": FAST},
        progress=False,
        scenario_kwargs={"tasks": 2},
    )
    args.update(kw)
    return run_experiment(**args)


def test_experiment_writes_folder_and_report(tmp_path):
    res = _exp(tmp_path)
    group = tmp_path / "t" / "class-incremental-blobs"
    for m in ("finetune", "ncm"):
        for s in (0, 1):
            d = group / m / f"seed{s}"
            assert {"config.json", "results.json", "metrics.jsonl", "checkpoints"} <= {p.name for p in d.iterdir()}
            assert len((d / "metrics.jsonl").read_text().splitlines()) == 2
    assert (group / "summary.csv").exists() and (group / "report.md").exists()
    assert (tmp_path / "t" / "experiment.json").exists()
    assert len(res["ncm"]) == 2


def test_folder_with_other_run_is_refused_unless_told(tmp_path):
    _exp(tmp_path)
    with pytest.raises(RunDirError, match="--resume"):
        _exp(tmp_path)  # same run again without resume
    with pytest.raises(RunDirError, match="different experiment"):
        _exp(tmp_path, overrides={"finetune": {"epochs": "2", "hidden": "16"}})
    res = _exp(tmp_path, overrides={"finetune": {"epochs": "2", "hidden": "16"}}, overwrite=True)
    assert res["finetune"][0].config["epochs"] == 2


def _record_learning(monkeypatch, *classes) -> list:
    """Wrap each class's ``learn`` to log (class name, seed, experience index); returns the log."""
    log = []
    for cls in classes:

        def learn(self, experience, _original=cls.learn, _name=cls.__name__):
            log.append((_name, self.seed, experience.index))
            return _original(self, experience)

        monkeypatch.setattr(cls, "learn", learn)
    return log


def test_resume_reuses_finished_runs(tmp_path, monkeypatch):
    from conftest import interrupt_learning_at
    from lifelong.methods.finetune import Finetune
    from lifelong.methods.ncm import NCM

    fresh = _exp(tmp_path / "fresh")
    interrupt_learning_at(monkeypatch, Finetune, 1)  # Ctrl-C in finetune seed 0's second experience
    with pytest.raises(KeyboardInterrupt):
        _exp(tmp_path)
    monkeypatch.undo()
    learned = _record_learning(monkeypatch, Finetune, NCM)
    first = _exp(tmp_path, resume=True)
    # finetune seed 0 goes on from its checkpoint after experience 0; the runs not begun start from scratch
    assert learned == [
        ("Finetune", 0, 1),
        ("Finetune", 1, 0),
        ("Finetune", 1, 1),
        ("NCM", 0, 0),
        ("NCM", 0, 1),
        ("NCM", 1, 0),
        ("NCM", 1, 1),
    ]
    learned.clear()
    again = _exp(tmp_path, resume=True)
    assert learned == []  # every run finished: nothing is learned again
    for m in ("finetune", "ncm"):
        for s in (0, 1):  # and the numbers are those of an uninterrupted run
            np.testing.assert_array_equal(first[m][s].accuracy_matrix, fresh[m][s].accuracy_matrix)
            np.testing.assert_array_equal(again[m][s].accuracy_matrix, fresh[m][s].accuracy_matrix)


def test_feature_cache_facts_reach_results_and_report(tmp_path, monkeypatch):
    from lifelong.data import DATASETS

    def cached_blobs(**kw):
        d = make_blobs(num_classes=4, per_class=20, dim=8, seed=0)
        d.meta["feature_cache"] = {
            "hit": True,
            "encode_seconds": 0.0,
            "load_seconds": 0.1,
            "saved_seconds": 12.5,
            "splits": {},
        }
        return d

    monkeypatch.setitem(DATASETS, "cached-blobs", cached_blobs)
    res = run_experiment(
        data="cached-blobs", methods=["ncm"], out=tmp_path, name="c", progress=False, scenario_kwargs={"tasks": 2}
    )
    assert res["ncm"][0].data_info["feature_cache"]["saved_seconds"] == 12.5
    report = (tmp_path / "c" / "class-incremental-cached-blobs" / "report.md").read_text()
    assert "## Feature cache" in report and "saving 12.5 s" in report
