"""`lifelong incontext train / eval` and the Python API under it (lifelong.incontext.report, .studies)."""

import json
import math

import pytest

from lifelong.cli import main
from lifelong.errors import ConfigError
from lifelong.incontext import evaluate_study, train_study
from lifelong.incontext.studies import STUDIES, resolve_settings

TINY = ["--steps", "4", "--batch", "8", "--set", "eval_prompts=24", "--set", "eval_every=2", "--quiet"]


@pytest.mark.parametrize("study", list(STUDIES))
def test_train_writes_checkpoint_metrics_plots_and_eval_reproduces_them(study, tmp_path, capsys):
    out = tmp_path / study
    assert main(["incontext", "train", study, "--out", str(out), *TINY]) == 0
    for name in ("study.json", "metrics.json", "training.png", "attention.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "checkpoint" / "state.safetensors").exists() and (out / "checkpoint" / "state.json").exists()
    per_position = STUDIES[study].per_position
    assert (out / ("position.png" if per_position else "modes.png")).exists()
    saved = json.loads((out / "metrics.json").read_text())
    assert len(saved["train"]["loss"]) == 4 and all(math.isfinite(v) for v in saved["train"]["loss"])
    assert [e["step"] for e in saved["history"]] == [0, 2, 4]
    ev = saved["eval"]
    if per_position:
        n = len(ev["per_position"]["model"])
        assert n > 1 and all(len(v) == n for v in ev["per_position"].values())
    else:
        assert any(k.endswith("_accuracy") for k in ev["summary"])
    capsys.readouterr()
    (out / "position.png").unlink(missing_ok=True)
    (out / "modes.png").unlink(missing_ok=True)
    # eval re-draws the plots and gives the saved numbers exactly (same machine, same kernels, same fixed prompts)
    assert main(["incontext", "eval", str(out)]) == 0
    assert study.split("-")[0] in capsys.readouterr().out
    again = json.loads((out / "metrics.json").read_text())
    assert again["eval"] == ev
    assert again["history"] == saved["history"] and again["train"] == saved["train"]
    assert (out / ("position.png" if per_position else "modes.png")).exists()


def test_references_are_in_the_position_metrics(tmp_path):
    run = train_study("linear", steps=3, batch=8, settings={"eval_prompts": 32}, progress=False, plots=False)
    per = run.metrics["eval"]["per_position"]
    assert {"model", "ols", "ridge", "gd"} <= set(per)
    assert per["ols"][-1] < per["ols"][1]  # OLS learns from the context: the metric is by position
    run = train_study("boolean", steps=2, batch=8, settings=["eval_prompts=32"], progress=False, plots=False)
    assert "elimination" in run.metrics["eval"]["per_position"]
    assert run.metrics["eval"]["per_position"]["elimination"][-1] > 0.8


def test_resume_after_a_partial_run_equals_an_uninterrupted_run(tmp_path, capsys):
    sets = {"eval_prompts": 24, "eval_every": 3, "checkpoint_every": 4, "schedule": "cosine"}
    whole = train_study("boolean", steps=10, batch=8, settings=sets, out=tmp_path / "whole", progress=False)

    def crash(model, step):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_study("boolean", steps=10, batch=8, settings=sets, out=tmp_path / "part", progress=False, on_step=crash)
    assert not (tmp_path / "part" / "metrics.json").exists()
    args = ["incontext", "train", "boolean", "--steps", "10", "--batch", "8", "--out", str(tmp_path / "part")]
    args += [f"--set={k}={v}" for k, v in sets.items()] + ["--quiet"]
    assert main(args) == 2  # the folder holds a run: --resume is needed
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    resumed = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert resumed["train"]["loss"] == pytest.approx(whole.metrics["train"]["loss"], rel=1e-5, abs=1e-7)
    assert [e["step"] for e in resumed["history"]] == [e["step"] for e in whole.metrics["history"]]
    assert resumed["eval"]["per_position"]["model"] == pytest.approx(
        whole.metrics["eval"]["per_position"]["model"], abs=1e-6
    )
    assert main([*args[:-1], "--seed", "1", "--resume"]) == 2  # other settings: refused, not mixed
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["incontext", "train", "lineer"], "unknown in-context study 'lineer'; choose one of"),
        (["incontext", "train", "linear", "--set", "nois=0.1"], "unknown setting 'nois' for study linear"),
        (["incontext", "train", "linear", "--set", "noise"], "--set expects KEY=VALUE"),
        (["incontext", "train", "linear", "--set", "d=four"], "setting d of study linear takes a value of type int"),
        (["incontext", "train", "boolean", "--set", "function=xor"], "unknown Boolean function class 'xor'"),
        (["incontext", "train", "linear", "--set", "steps=3"], "give --steps"),
        (["incontext", "eval", "{tmp}/nothing"], "no run folder"),
        (["incontext", "eval", "linear", "--checkpoint", "{tmp}/nothing"], "no run folder"),
        (["incontext", "eval", "{tmp}"], "holds no study.json"),
    ],
)
def test_bad_inputs_give_one_clear_line(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # train's default --out is runs/incontext/STUDY
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*argv, "--quiet"] if argv[1] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lifelong: error:") and needle in err and "\n" not in err
    assert not any(tmp_path.iterdir())  # nothing written by a refused command


def test_missing_checkpoint_and_wrong_study(tmp_path, capsys):
    run = train_study("linear", steps=2, batch=4, settings={"eval_prompts": 8}, out=tmp_path, progress=False)
    assert run.files
    with pytest.raises(ConfigError, match="not 'bursty'"):
        evaluate_study(tmp_path, study="bursty")
    for f in (tmp_path / "checkpoint").iterdir():
        f.unlink()
    assert main(["incontext", "eval", "linear", "--checkpoint", str(tmp_path)]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_settings_resolve_with_types_and_options():
    s = resolve_settings("dual_process", ["forgetting=temporary", "zipf=1"], steps=7)
    assert s["study"] == "dual-process" and s["steps"] == 7 and s["zipf"] == 1.0 and isinstance(s["zipf"], float)
    assert resolve_settings("boolean", {"force": 0.2})["force"] == 0.2
    with pytest.raises(ConfigError, match="model must be"):
        resolve_settings("linear", {"model": "rnn"})


def test_lstm_model_has_no_attention_plot(tmp_path):
    run = train_study(
        "projection", steps=2, batch=4, settings={"model": "lstm", "eval_prompts": 8}, out=tmp_path, progress=False
    )
    names = {f.name for f in run.files}
    assert {"position.png", "training.png"} <= names and "attention.png" not in names


def test_train_help_names_every_study(capsys):
    from lifelong.cli import main

    with pytest.raises(SystemExit):
        main(["incontext", "train", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in STUDIES)
