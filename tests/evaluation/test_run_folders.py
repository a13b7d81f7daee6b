"""What a run folder promises: refusals write nothing, one experiment per folder, resume redoes
what is missing, an exclusive lock, stored absolute paths and data hashes, safe file modes."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from lifelong.data import DATASETS, Dataset
from lifelong.errors import ConfigError, RunDirError
from lifelong.evaluation.report import load_results, write_report
from lifelong.fileio import FolderLock
from lifelong.runner import run_experiment
from lifelong.runner.experiment import resume_experiment

FAST = {"epochs": "1", "hidden": "16"}


def _exp(tmp_path, **kw):
    args = dict(
        data="blobs",
        methods=["ncm"],
        seeds=[0],
        out=tmp_path,
        name="e",
        progress=False,
        scenario_kwargs={"tasks": 2},
        overrides={"finetune": FAST},
    )
    args.update(kw)
    return run_experiment(**args)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_run_writes_nothing_and_the_original_still_resumes(tmp_path):
    _exp(tmp_path)
    before = _snapshot(tmp_path / "e")
    with pytest.raises(RunDirError, match="different experiment"):
        _exp(tmp_path, methods=["ncm", "finetune"], scenario_kwargs={"tasks": 4})
    with pytest.raises(RunDirError, match="already holds this experiment"):
        _exp(tmp_path)
    assert _snapshot(tmp_path / "e") == before
    res = resume_experiment(tmp_path / "e", progress=False)
    assert res["ncm"][0].status == "complete"


def test_overwrite_replaces_the_whole_experiment(tmp_path):
    _exp(tmp_path, methods=["ncm", "finetune"])
    _exp(tmp_path, methods=["finetune"], scenario_kwargs={"tasks": 4}, overwrite=True)
    group = tmp_path / "e" / "class-incremental-blobs"
    assert sorted(p.name for p in group.iterdir() if p.is_dir() and p.name != "plots") == ["finetune"]
    assert list(load_results(group)) == ["finetune"]
    summary = (group / "summary.csv").read_text()
    assert "finetune" in summary and "ncm" not in summary
    assert json.loads((tmp_path / "e" / "experiment.json").read_text())["methods"] == ["finetune"]


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_resume_redoes_a_seed_whose_results_are_damaged(tmp_path, damage):
    first = _exp(tmp_path, methods=["ncm", "finetune"])
    path = tmp_path / "e" / "class-incremental-blobs" / "finetune" / "seed0" / "results.json"
    if damage == "corrupt":
        path.write_text("{half a file")
        with pytest.raises(RunDirError, match="--resume"):
            write_report(path.parents[2])  # the report's advice: redo it with --resume
    else:
        path.unlink()
    again = resume_experiment(tmp_path / "e", progress=False)
    assert json.loads(path.read_text())["status"] == "complete"
    np.testing.assert_array_equal(first["finetune"][0].accuracy_matrix, again["finetune"][0].accuracy_matrix)
    assert "finetune" in (path.parents[2] / "summary.csv").read_text()


def test_a_corrupt_checkpoint_is_redone_from_the_start(tmp_path):
    first = _exp(tmp_path, methods=["finetune"])
    seed_dir = tmp_path / "e" / "class-incremental-blobs" / "finetune" / "seed0"
    (seed_dir / "results.json").unlink()
    (seed_dir / "checkpoints" / "state.safetensors").write_bytes(b"garbage")
    again = resume_experiment(tmp_path / "e", progress=False)
    np.testing.assert_array_equal(first["finetune"][0].accuracy_matrix, again["finetune"][0].accuracy_matrix)


def test_the_folder_is_locked_while_a_run_holds_it(tmp_path):
    _exp(tmp_path)
    before = _snapshot(tmp_path / "e")
    with FolderLock(tmp_path / "e"):  # another process would hold it the same way
        with pytest.raises(RunDirError, match=rf"in use by another lifelong process \(pid {os.getpid()}"):
            resume_experiment(tmp_path / "e", progress=False)
        with pytest.raises(RunDirError, match="in use"):
            _exp(tmp_path, methods=["finetune"], overwrite=True)
    assert {k: v for k, v in _snapshot(tmp_path / "e").items() if k != ".lock"} == before
    assert not (tmp_path / "e" / ".lock").exists()  # released
    resume_experiment(tmp_path / "e", progress=False)


def test_resume_trims_metrics_back_to_the_checkpoint(tmp_path, monkeypatch):
    from conftest import interrupt_learning_at
    from lifelong.methods.finetune import Finetune

    original = Finetune.learn
    interrupt_learning_at(monkeypatch, Finetune, 2)
    with pytest.raises(KeyboardInterrupt):
        _exp(tmp_path, methods=["finetune"], scenario_kwargs={"tasks": 4})
    monkeypatch.setattr(Finetune, "learn", original)
    metrics = tmp_path / "e" / "class-incremental-blobs" / "finetune" / "seed0" / "metrics.jsonl"
    with open(metrics, "a") as f:  # lines a killed process wrote after its last checkpoint
        f.write(json.dumps({"experience": 2, "accuracy": [0, 0, 0, 0]}) + "\n{torn")
    resume_experiment(tmp_path / "e", progress=False)
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [x["experience"] for x in lines] == [0, 1, 2, 3]


def _write_numbers(path, seed: int = 0, shift: float = 0.0) -> None:
    """A CSV of 4 separable classes (10 rows each, 3 features, label last); ``shift`` changes one value."""
    rng = np.random.default_rng(seed)
    rows = np.hstack(
        [rng.normal(size=(40, 3)) + np.repeat(np.arange(4), 10)[:, None] * 3, np.repeat(np.arange(4), 10)[:, None]]
    )
    rows[0, 0] += shift
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, rows, delimiter=",")


def _numbers_file_loader(path: str) -> Dataset:
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    x, y = torch.tensor(rows[:, :-1], dtype=torch.float32), torch.tensor(rows[:, -1], dtype=torch.int64)
    d = Dataset("numbers", x, y, x.clone(), y.clone(), [str(c) for c in range(int(y.max()) + 1)])
    d.meta["source_files"] = [str(os.path.abspath(path))]
    return d


def test_data_paths_are_stored_absolute_and_changed_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "numbers", _numbers_file_loader)
    _write_numbers(tmp_path / "data.csv", seed=0)
    monkeypatch.chdir(tmp_path)
    _exp(tmp_path / "runs", data="numbers", data_kwargs={"path": "data.csv"})
    inv = json.loads((tmp_path / "runs" / "e" / "experiment.json").read_text())
    assert inv["data_kwargs"]["path"] == str(tmp_path / "data.csv")
    assert list(inv["data_files"]) == [str(tmp_path / "data.csv")]
    monkeypatch.chdir(tmp_path / "runs")  # resume from elsewhere reads the same file
    resume_experiment(tmp_path / "runs" / "e", progress=False)
    _write_numbers(tmp_path / "data.csv", shift=1.0)
    with pytest.raises(RunDirError, match=r"data\.csv changed since this experiment started"):
        resume_experiment(tmp_path / "runs" / "e", progress=False)


def test_labels_only_in_the_test_split_are_refused_at_load(monkeypatch, tmp_path):
    def loader():
        x = torch.randn(6, 2)
        return Dataset("t", x, torch.tensor([0, 0, 0, 1, 1, 1]), x, torch.tensor([0, 1, 2, 0, 1, 2]), ["a", "b", "c"])

    monkeypatch.setitem(DATASETS, "only-test", loader)
    from lifelong.errors import DataError

    with pytest.raises(DataError, match=r"1 class\(es\) occur only in the test split \('c'\)"):
        _exp(tmp_path, data="only-test")
    assert not (tmp_path / "e").exists()


def test_a_foreign_experiment_json_is_never_overwritten(tmp_path):
    (tmp_path / "e").mkdir()
    mine = tmp_path / "e" / "experiment.json"
    mine.write_text('{"my": "notes"}')
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(RunDirError, match="was not written by lifelong"):
            _exp(tmp_path, **kw)
    assert mine.read_text() == '{"my": "notes"}'
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "thesis.tex").write_text("x")
    with pytest.raises(RunDirError, match="not a lifelong run folder"):
        _exp(tmp_path, name="f", overwrite=True)
    assert (tmp_path / "f" / "thesis.tex").exists()


def test_result_files_follow_the_umask_and_are_strict_json(tmp_path):
    old = os.umask(0o022)
    try:
        _exp(tmp_path, methods=["finetune"])
    finally:
        os.umask(old)
    seed_dir = tmp_path / "e" / "class-incremental-blobs" / "finetune" / "seed0"
    for name in ("results.json", "config.json", "checkpoints/state.json"):
        assert stat.S_IMODE(os.stat(seed_dir / name).st_mode) == 0o644, name
    assert stat.S_IMODE(os.stat(tmp_path / "e" / "experiment.json").st_mode) == 0o644

    def strict(c):
        raise ValueError(f"non-standard JSON constant {c}")

    json.loads((seed_dir / "results.json").read_text(), parse_constant=strict)


def test_non_finite_numbers_never_reach_result_files_but_survive_checkpoints(tmp_path):
    from lifelong.evaluation.checkpoint import load_checkpoint, save_checkpoint
    from lifelong.fileio import atomic_write_json

    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"lr": float("inf")})
    save_checkpoint(tmp_path / "ck", {"best": float("inf"), "gap": float("-inf"), "x": float("nan")}, {})
    state, _ = load_checkpoint(tmp_path / "ck")
    assert state["best"] == float("inf") and state["gap"] == float("-inf") and state["x"] != state["x"]


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="exclude each other"):
        _exp(tmp_path, resume=True, overwrite=True)


def test_a_lock_held_by_another_process_refuses_and_a_killed_holder_frees_it(tmp_path):
    import subprocess
    import sys

    _exp(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from lifelong.fileio import FolderLock; "
            f"FolderLock({str(tmp_path / 'e')!r}).acquire(); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"pid {holder.pid}"):
            resume_experiment(tmp_path / "e", progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "e" / ".lock").exists()  # a killed holder leaves its file, but not its lock
    assert resume_experiment(tmp_path / "e", progress=False)["ncm"][0].status == "complete"


def test_overwrite_keeps_files_lifelong_did_not_write(tmp_path):
    _exp(tmp_path, methods=["ncm", "finetune"])
    root = tmp_path / "e"
    mine = [
        root / "notes.txt",
        root / "class-incremental-blobs" / "mine.txt",
        root / "class-incremental-blobs" / "ncm" / "seed0" / "mynote.txt",
    ]
    for p in mine:
        p.write_text("keep me")
    _exp(tmp_path, methods=["finetune"], overwrite=True)
    assert all(p.read_text() == "keep me" for p in mine)
    assert not (root / "class-incremental-blobs" / "ncm" / "seed0" / "results.json").exists()


@pytest.mark.parametrize("content", ["my notes", '{"format": "lifelong-experiment-1"}'])
def test_an_unreadable_experiment_json_means_nothing_is_touched(tmp_path, content):
    (tmp_path / "e" / "paper").mkdir(parents=True)
    (tmp_path / "e" / "experiment.json").write_text(content)
    (tmp_path / "e" / "paper" / "report.md").write_text("x")  # named like lifelong's own files
    for kw in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunDirError, match="cannot tell which files"):
            _exp(tmp_path, **kw)
    assert (tmp_path / "e" / "paper" / "report.md").exists()
    assert (tmp_path / "e" / "experiment.json").read_text() == content


def test_overwrite_keeps_user_files_named_like_lifelongs(tmp_path):
    _exp(tmp_path, data="digits", methods=["ncm"])
    root = tmp_path / "e"
    g = root / "class-incremental-digits"
    mine = [
        root / "paper" / "report.md",
        root / "paper" / "summary.csv",
        g / "old_ncm" / "seed0" / "results.json",
        root / "backup_blobs" / "ncm" / "seed1" / "config.json",
        g / "plots" / "mine.png",
        g / "ncm" / "seed01" / "results.json",
    ]
    for p in mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("mine")
    (root / "emptyuserdir").mkdir()
    _exp(tmp_path, data="digits", methods=["ncm"], overwrite=True)
    assert all(p.read_text() == "mine" for p in mine) and (root / "emptyuserdir").is_dir()


def test_nan_in_a_results_file_is_redone(tmp_path):
    first = _exp(tmp_path, methods=["finetune"])
    path = tmp_path / "e" / "class-incremental-blobs" / "finetune" / "seed0" / "results.json"
    path.write_text(path.read_text().replace('"final_average_accuracy": ', '"final_average_accuracy": NaN, "x": ', 1))
    with pytest.raises(RunDirError, match="NaN"):
        write_report(path.parents[2])
    again = resume_experiment(tmp_path / "e", progress=False)
    np.testing.assert_array_equal(first["finetune"][0].accuracy_matrix, again["finetune"][0].accuracy_matrix)
    assert "NaN" not in path.read_text()


@pytest.mark.parametrize("content", ["{}", '{"status": "complete"}', "wrong-method", "short-matrix"])
def test_resume_redoes_results_that_are_not_this_runs(tmp_path, content):
    first = _exp(tmp_path, methods=["finetune"])
    path = tmp_path / "e" / "class-incremental-blobs" / "finetune" / "seed0" / "results.json"
    doc = json.loads(path.read_text())
    if content == "wrong-method":
        doc["method"] = "ncm"
    elif content == "short-matrix":
        doc["accuracy_matrix"] = doc["accuracy_matrix"][:1]
    path.write_text(json.dumps(doc) if content in ("wrong-method", "short-matrix") else content)
    again = resume_experiment(tmp_path / "e", progress=False)
    assert again["finetune"][0].method == "finetune"
    np.testing.assert_array_equal(first["finetune"][0].accuracy_matrix, again["finetune"][0].accuracy_matrix)


def test_a_crashing_method_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    from lifelong.errors import RunFailedError
    from lifelong.methods.finetune import Finetune

    def crash(self, experience):
        raise RuntimeError("a bug in the method")

    monkeypatch.setattr(Finetune, "learn", crash)
    with pytest.raises(RunFailedError, match="finetune seed 0: RuntimeError: a bug in the method") as e:
        _exp(tmp_path, methods=["finetune", "ncm"])
    assert e.value.results["ncm"][0].status == "complete"
    assert "1 failed" in (tmp_path / "e" / "class-incremental-blobs" / "report.md").read_text()


def _rooted_loader(data_root: str | None = None) -> Dataset:
    d = _numbers_file_loader(os.path.join(data_root, "data.csv"))
    d.meta["source_files"] = [os.path.join(data_root, "data.csv")]
    return d


def test_moved_data_resumes_with_a_new_data_root_and_the_default_root_is_stored(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "rooted", _rooted_loader)
    _write_numbers(tmp_path / "a" / "data.csv", seed=0)
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "a"))
    _exp(tmp_path / "runs", data="rooted")
    inv = json.loads((tmp_path / "runs" / "e" / "experiment.json").read_text())
    assert inv["data_kwargs"]["data_root"] == str(tmp_path / "a")  # not left to the environment
    monkeypatch.delenv("LIFELONG_DATA")
    (tmp_path / "a").rename(tmp_path / "b")
    res = resume_experiment(tmp_path / "runs" / "e", progress=False, data_root=tmp_path / "b")
    assert res["ncm"][0].status == "complete"
    _write_numbers(tmp_path / "b" / "data.csv", shift=1.0)
    with pytest.raises(RunDirError, match="changed since this experiment started"):
        resume_experiment(tmp_path / "runs" / "e", progress=False, data_root=tmp_path / "b")


@pytest.mark.parametrize(
    "edit", [{"overrides": {"ncm": "x"}}, {"methods": [["ncm"]]}, {"seeds": None}, {"seeds": [2**40]}]
)
def test_a_hand_edited_experiment_json_is_refused_in_one_line(tmp_path, edit):
    _exp(tmp_path)
    path = tmp_path / "e" / "experiment.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(RunDirError, match="malformed|bad seed"):
        resume_experiment(tmp_path / "e", progress=False)


def test_moved_data_files_resume_with_data_root(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "numbers", _numbers_file_loader)
    _write_numbers(tmp_path / "a" / "data.csv", seed=1)
    _exp(tmp_path / "runs", data="numbers", data_kwargs={"path": str(tmp_path / "a" / "data.csv")})
    (tmp_path / "a").rename(tmp_path / "b")
    res = resume_experiment(tmp_path / "runs" / "e", progress=False, data_root=tmp_path / "b")
    assert res["ncm"][0].status == "complete"
    _exp(tmp_path, name="blobs")
    with pytest.raises(ConfigError, match="reads no files"):
        resume_experiment(tmp_path / "blobs", progress=False, data_root=tmp_path)
