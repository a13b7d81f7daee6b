"""The `lifelong` command."""

import pytest

from lifelong.cli import main


def test_default_benchmark_er_and_joint_beat_finetune(tmp_path, capsys):
    """`lifelong run` with no method arguments: the embedded default (split MNIST, 9 methods)."""
    assert main(["run", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    group = tmp_path / "default" / "class-incremental-mnist"
    assert "report:" in out and (group / "report.md").exists()
    assert (group / "plots" / "accuracy_curves.png").exists()
    import json

    acc = {
        m: json.loads((group / m / "seed0" / "results.json").read_text())["metrics"]["final_average_accuracy"]
        for m in ("finetune", "ewc", "lwf", "er", "derpp", "icarl", "gdumb", "ncm", "joint")
    }
    assert acc["finetune"] < 0.3  # finetune forgets
    assert acc["er"] > acc["finetune"] + 0.3
    assert min(acc["derpp"], acc["icarl"], acc["gdumb"]) > acc["finetune"] + 0.3  # the replay baselines keep
    assert acc["joint"] > acc["er"] and acc["joint"] > 0.85
    for m in acc:
        assert m in out


def test_run_options_and_resume(tmp_path, capsys):
    args = [
        "run",
        "--data",
        "digits",
        "--methods",
        "finetune,er",
        "--tasks",
        "2",
        "--seeds",
        "0",
        "--set",
        "method.epochs=1",
        "--set",
        "er.buffer_size=50",
        "--out",
        str(tmp_path),
        "--name",
        "x",
        "--quiet",
    ]
    import json

    assert main(args) == 0
    out = capsys.readouterr().out
    group = tmp_path / "x" / "class-incremental-digits"
    assert sorted(p.relative_to(group).as_posix() for p in group.glob("*/seed*")) == ["er/seed0", "finetune/seed0"]
    results = {m: json.loads((group / m / "seed0" / "results.json").read_text()) for m in ("finetune", "er")}
    for m, r in results.items():
        assert r["status"] == "complete" and r["data"] == "digits" and r["seed"] == 0
        assert r["stream"]["num_experiences"] == 2 and len(r["accuracy_matrix"]) == 2  # --tasks 2
        assert r["config"]["epochs"] == 1  # method.epochs reaches every method
        assert f"\n{m} " in out  # a row of the printed table
    assert results["er"]["config"]["buffer_size"] == 50
    assert f"report: {group / 'report.md'}" in out and (group / "report.md").is_file()
    finished = {p: p.read_bytes() for p in group.glob("*/seed0/results.json")}
    assert main(["run", "--resume", str(tmp_path / "x"), "--quiet"]) == 0
    assert {p: p.read_bytes() for p in group.glob("*/seed0/results.json")} == finished  # nothing was run again
    (group / "report.md").unlink()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "x")]) == 0
    assert capsys.readouterr().out == f"report: {group / 'report.md'}\n"
    report = (group / "report.md").read_text()
    assert "| finetune |" in report and "| er |" in report and "2 experiences" in report


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--methods", "nope"], "unknown method 'nope'"),
        (["run", "--data", "nope"], "unknown dataset"),
        (["run", "--scenario", "nope"], "unknown scenario"),
        (["run", "--set", "er.nope=1", "--methods", "er"], "has no key 'nope'"),
        (["run", "--set", "method.nope=1"], "no selected method"),
        (["run", "--set", "lr=1"], "target.key=value"),
        (["run", "--tasks", "11"], "at most 10 tasks"),
        (["report", "/nonexistent/folder"], "no results"),
        (["show", "nope"], "unknown method"),
        (["reproduce", "nope"], "unknown paper"),
        # each of these was a raw Python traceback before
        (
            ["run", "--data", "blobs", "--methods", "ncm", "--set", "data.per_clas=5"],
            "dataset 'blobs' takes no argument per_clas; valid keys: num_classes, per_class",
        ),
        (
            ["run", "--data", "text-file", "--methods", "ncm"],
            "dataset 'text-file' needs path; give --set data.path=...",
        ),
        (
            ["run", "--data", "blobs", "--methods", "ncm", "--set", "scenario.tasks=abc"],
            "scenario key 'tasks' expects an integer or none, got 'abc'",
        ),
        (
            ["run", "--data", "blobs", "--methods", "finetune", "--set", "method.momentum=-3"],
            "momentum and weight_decay must be >= 0",
        ),
        (
            ["run", "--data", "blobs", "--methods", "finetune", "--set", "method.lr=inf"],
            "config key 'lr' expects a finite number, got 'inf'",
        ),
        (
            ["run", "--data", "blobs", "--methods", "er", "--set", "er.buffer_size=true"],
            "config key 'buffer_size' expects an integer, got 'true'",
        ),
        (["run", "--data", "blobs", "--methods", "lwf", "--set", "lwf.temperature=0"], "temperature must be > 0"),
        (["run", "--data", "blobs", "--methods", "ncm", "--seeds", "4294967296"], "seeds must be integers in [0, "),
        (
            ["run", "--data", "clinc150", "--methods", "ncm", "--data-root", "/nonexistent/clinc"],
            "CLINC150 files not found",
        ),
    ],
)
def test_bad_input_one_clear_error(args, message, tmp_path, capsys):
    assert main(args + (["--out", str(tmp_path)] if args[0] == "run" else [])) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert err.startswith("lifelong: error: ")
    assert not list(tmp_path.iterdir())  # a refused run writes nothing


@pytest.mark.parametrize("seeds, message", [("", "no seeds given"), ("0,0", "seed(s) 0 listed twice")])
def test_seed_lists_are_checked(seeds, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--data", "blobs", "--methods", "ncm", "--seeds", seeds, "--out", str(tmp_path)])
    assert e.value.code == 2 and message in capsys.readouterr().err


def _fast_run(tmp_path, *extra):
    return [
        "run",
        "--data",
        "blobs",
        "--methods",
        "ncm",
        "--tasks",
        "2",
        "--out",
        str(tmp_path),
        "--name",
        "e",
        "--quiet",
        *extra,
    ]


@pytest.mark.parametrize(
    "file, content, message",
    [
        ("experiment.json", "{oops", "experiment.json is unreadable"),
        ("class-incremental-blobs/ncm/seed0/config.json", "{oops", "config.json is unreadable"),
    ],
)
def test_corrupt_run_files_on_resume_give_one_line(tmp_path, capsys, file, content, message):
    assert main(_fast_run(tmp_path)) == 0
    (tmp_path / "e" / file).write_text(content)
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "e"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and ("remove that folder" in err or "--resume again" in err)


def test_resume_refuses_other_arguments(tmp_path, capsys):
    assert main(_fast_run(tmp_path)) == 0
    for extra in (["--overwrite"], ["--methods", "er"], ["--set", "method.lr=1"], ["--seeds", "1"]):
        capsys.readouterr()
        assert main(["run", "--resume", str(tmp_path / "e"), *extra]) == 2
        err = capsys.readouterr().err
        assert "--resume continues the experiment exactly as stored" in err and extra[0] in err
    assert main(["run", "--resume", str(tmp_path / "e"), "--quiet", "--threads", "1"]) == 0


def test_unwritable_or_file_output_is_refused(tmp_path, capsys, monkeypatch):
    import os

    f = tmp_path / "afile"
    f.write_text("x")
    assert main(_fast_run(tmp_path)[:-5] + ["--out", str(f), "--name", "e", "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    real_access = os.access
    if real_access(ro, os.W_OK):  # root writes anywhere: make this folder read-only in lifelong's eyes
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p) == str(ro) else real_access(p, mode))
    try:
        assert main(_fast_run(ro)) == 2
        assert "cannot write to" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_an_unforeseen_os_error_is_one_line(tmp_path, capsys, monkeypatch):
    import lifelong.runner.experiment as ex

    def denied(path, obj):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ex, "atomic_write_json", denied)
    assert main(_fast_run(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("lifelong: error: cannot access") and "Permission denied" in err and err.count("\n") == 1


def test_interrupt_message_names_the_run_folder(tmp_path, capsys, monkeypatch):
    import lifelong.runner as ex
    from conftest import interrupt_learning_at
    from lifelong.methods.finetune import Finetune

    original = Finetune.learn
    interrupt_learning_at(monkeypatch, Finetune, 1)
    args = [
        "run",
        "--data",
        "blobs",
        "--methods",
        "finetune",
        "--tasks",
        "2",
        "--set",
        "method.hidden=16",
        "--out",
        str(tmp_path),
        "--name",
        "e",
        "--quiet",
    ]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"continue with `lifelong run --resume {tmp_path / 'e'}`" in err and "RUN_DIR" not in err
    monkeypatch.setattr(Finetune, "learn", original)
    assert main(["run", "--resume", str(tmp_path / "e"), "--quiet"]) == 0  # the advice works

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ex, "run_experiment", interrupted)
    assert main(_fast_run(tmp_path / "other")) == 130
    assert "interrupted before anything was saved" in capsys.readouterr().err


def test_one_diverging_method_does_not_sink_the_others(tmp_path, capsys):
    args = [
        "run",
        "--data",
        "blobs",
        "--methods",
        "ewc,ncm,finetune",
        "--tasks",
        "2",
        "--out",
        str(tmp_path),
        "--name",
        "d",
        "--quiet",
        "--set",
        "ewc.ewc_lambda=1e38",
        "--set",
        "method.hidden=16",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    group = tmp_path / "d" / "class-incremental-blobs"
    import json

    status = {
        m: json.loads((group / m / "seed0" / "results.json").read_text())["status"] for m in ("ewc", "ncm", "finetune")
    }
    assert status == {"ewc": "failed", "ncm": "complete", "finetune": "complete"}
    report = (group / "report.md").read_text()
    assert "ewc" in report and "1 failed" in report and "ncm" in report
    assert "ewc" in captured.out and "1 failed" in captured.out  # the table shows the failed method
    assert "1 of 3 runs failed" in captured.err and "method.ewc_lambda=1e+38" in captured.err
    # resuming reuses the recorded failure (deterministic) and still exits non-zero
    assert main(["run", "--resume", str(tmp_path / "d"), "--quiet"]) == 1


def test_list_show_papers_reproduce(capsys):
    for what in ("methods", "scenarios", "data", "optimizers"):
        assert main(["list", what]) == 0
    out = capsys.readouterr().out
    assert "er" in out and "class-incremental" in out and "mnist" in out and "sgd" in out
    assert main(["show", "er"]) == 0
    assert "buffer_size" in capsys.readouterr().out
    assert main(["papers"]) == 0
    out = capsys.readouterr().out
    assert "cl-llm-survey" in out and "lame" in out
    assert main(["reproduce", "cl-llm-survey"]) == 0
    from lifelong.papers import format_claim, reproduce

    assert capsys.readouterr().out == format_claim(reproduce("cl-llm-survey")) + "\n"


def test_format_claim_says_held_or_not_held():
    from lifelong.papers import Claim, format_claim

    def verdicts(text):
        return [line.split(None, 1)[1] for line in text.splitlines() if line.split()[:1] == ["result"]]

    held = format_claim(Claim("demo", "a statement", "x > 1", {"x": 2.0, "ok": True}, True))
    not_held = format_claim(Claim("demo", "a statement", "x > 1", {"x": 0.5, "ok": False}, False, notes="n"))
    assert verdicts(held) == ["HELD"] and verdicts(not_held) == ["NOT HELD"]  # "HELD" is inside "NOT HELD"
    assert held.splitlines()[0] == "demo (quick scale)" and "criterion   x > 1" in held
    assert "x         2" in held and "ok        yes" in held and "ok        no" in not_held
    assert not_held.splitlines()[-1] == "notes       n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "data.per_class=0"], "blobs: per_class must be >= 2"),
        (["--set", "data.dim=0"], "blobs: dim must be >= 1"),
        (["--set", "data.seed=-1"], "data seed must lie in [0, 2**32)"),
        (["--set", "method.hidden=-5"], "hidden must list layer widths >= 1"),
        (["--set", "method.hidden=0"], "hidden must list layer widths >= 1"),
        (["--set", "method.optimizer=adamw2"], "unknown optimizer 'adamw2'"),
        (["--set", "method.optimizer=sgd+norm_test:eta=-1"], "eta must be a number > 0"),
        (["--set", "scenario.tasks=3"], "the number of tasks is given twice"),
        (["--threads", "10000"], "threads must lie in [1, 256]"),
        (["--name", "../escape"], "--name must be a plain folder name"),
        (["--out", ""], "--out was given an empty value"),
        (["--resume", ""], "--resume was given an empty value"),
        (["--seeds", ""], "no seeds given"),
        (["--seeds", "0,0"], "seed(s) 0 listed twice"),
        (["--tasks", "abc"], "argument --tasks: invalid int value"),
    ],
)
def test_more_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    base = ["run", "--data", "blobs", "--methods", "finetune", "--tasks", "2", "--out", str(tmp_path / "o"), "--quiet"]
    if args[0] == "--out":
        base = base[:-3] + ["--quiet"]
    if args[0] == "--resume":
        base = ["run", "--quiet"]
    if args[0] == "--tasks":
        base = ["run", "--data", "blobs", "--quiet"]
    try:
        code = main(base + args)
    except SystemExit as e:  # argparse's own checks (types, --seeds) exit through SystemExit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("lifelong: error: ")
    assert not (tmp_path / "o").exists() and not (tmp_path / "escape").exists()


@pytest.mark.parametrize(
    "var, value, message",
    [
        ("LIFELONG_THREADS", "abc", "LIFELONG_THREADS must be a whole"),
        ("OMP_WAIT_POLICY", "foo", "unset the OMP_WAIT_POLICY"),
    ],
)
def test_bad_environment_is_one_line(var, value, message, monkeypatch, capsys):
    monkeypatch.setenv(var, value)
    assert main(["run", "--data", "blobs", "--methods", "ncm", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_bad_setting_with_overwrite_deletes_nothing(tmp_path, capsys):
    assert main(_fast_run(tmp_path)) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "e").rglob("*") if p.is_file()}
    args = [
        "run",
        "--data",
        "blobs",
        "--methods",
        "ncm,finetune",
        "--tasks",
        "2",
        "--out",
        str(tmp_path),
        "--name",
        "e",
        "--quiet",
        "--overwrite",
        "--set",
        "finetune.optimizer=adamw2",
    ]
    assert main(args) == 2
    assert "unknown optimizer" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (tmp_path / "e").rglob("*") if p.is_file()} == before


def test_resume_at_a_subfolder_points_to_the_experiment(tmp_path, capsys):
    assert main(_fast_run(tmp_path)) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "e" / "class-incremental-blobs")]) == 2
    assert f"inside the experiment folder {tmp_path / 'e'}" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_renders_only_lifelong_experiments_and_their_runs(tmp_path, capsys):
    import shutil

    assert main(_fast_run(tmp_path)) == 0
    group = tmp_path / "e" / "class-incremental-blobs"
    shutil.copytree(group / "ncm" / "seed0", group / "ncm" / "seed0.bak")  # a user's backup
    shutil.copytree(group / "ncm", group / "er")  # results that are not part of the experiment
    assert main(["report", str(tmp_path / "e")]) == 0
    summary = (group / "summary.csv").read_text()
    assert "er" not in summary.split("\n", 1)[1].split(",")[0] and summary.count("\n") == 2
    foreign = tmp_path / "notmine"
    shutil.copytree(group, foreign / "g")
    (foreign / "g" / "report.md").write_text("my report")
    capsys.readouterr()
    assert main(["report", str(foreign)]) == 2
    assert "is not the folder of an experiment written by `lifelong run`" in capsys.readouterr().err
    assert (foreign / "g" / "report.md").read_text() == "my report"


def test_only_the_experiments_own_group_is_shown_and_rendered(tmp_path, capsys):
    import shutil

    assert main(_fast_run(tmp_path)) == 0
    other = tmp_path / "e" / "class-incremental-digits"
    shutil.copytree(tmp_path / "e" / "class-incremental-blobs", other)  # a folder the experiment did not write
    (other / "report.md").write_text("mine")
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "e"), "--quiet"]) == 0
    assert "class-incremental-digits" not in capsys.readouterr().out
    assert main(["report", str(tmp_path / "e")]) == 0
    assert (other / "report.md").read_text() == "mine"
    assert main(["report", str(other)]) == 2


@pytest.mark.parametrize("edit", [{"method": "finetune"}, {"seed": 7}, {"accuracy_matrix": [[1.0, 0.0]]}])
def test_report_refuses_results_that_are_not_their_folders_run(tmp_path, capsys, edit):
    import json

    assert main(_fast_run(tmp_path)) == 0
    path = tmp_path / "e" / "class-incremental-blobs" / "ncm" / "seed0" / "results.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    capsys.readouterr()
    assert main(["report", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "not this folder's run" in err and "--resume" in err
    assert main(["run", "--resume", str(tmp_path / "e"), "--quiet"]) == 0  # the advice works
    assert main(["report", str(tmp_path / "e")]) == 0


def test_a_closed_pipe_is_not_an_error_about_the_output_folder(tmp_path, capsys, monkeypatch):
    import lifelong.cli as cli

    def closed(root):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_print_tables", closed)
    assert main(_fast_run(tmp_path)) == 141
    assert "--out" not in capsys.readouterr().err
