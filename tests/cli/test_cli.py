"""The `lifelong` command."""

import pytest

from lifelong.cli import main


def test_default_benchmark_er_and_joint_beat_finetune(tmp_path, capsys):
    """`lifelong run` with no method arguments: the embedded default (split MNIST, 6 methods)."""
    assert main(["run", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    group = tmp_path / "default" / "class-incremental-mnist"
    assert "report:" in out and (group / "report.md").exists()
    assert (group / "plots" / "accuracy_curves.png").exists()
    import json

    acc = {m: json.loads((group / m / "seed0" / "results.json").read_text())["metrics"]["final_average_accuracy"]
           for m in ("finetune", "ewc", "lwf", "er", "ncm", "joint")}
    assert acc["finetune"] < 0.3  # finetune forgets
    assert acc["er"] > acc["finetune"] + 0.3
    assert acc["joint"] > acc["er"] and acc["joint"] > 0.85
    for m in acc:
        assert m in out


def test_run_options_and_resume(tmp_path, capsys):
    args = ["run", "--data", "digits", "--methods", "finetune,er", "--tasks", "2", "--seeds", "0",
            "--set", "method.epochs=1", "--set", "er.buffer_size=50", "--out", str(tmp_path), "--name", "x",
            "--quiet"]
    assert main(args) == 0
    assert main(["run", "--resume", str(tmp_path / "x"), "--quiet"]) == 0
    assert main(["report", str(tmp_path / "x")]) == 0
    assert "report.md" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
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
])
def test_bad_input_one_clear_error(args, message, tmp_path, capsys):
    assert main(args + (["--out", str(tmp_path)] if args[0] == "run" else [])) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


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
    assert "HELD" in capsys.readouterr().out
