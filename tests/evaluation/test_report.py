"""Tests for lifelong.evaluation.report, summary and plots: rendering a finished run from JSON alone."""

import csv
import json
from pathlib import Path

import pytest

from lifelong.errors import LifelongError, RunDirError
from lifelong.evaluation import metrics, plots, report, summary
from lifelong.evaluation.report import (
    format_results_table,
    load_results,
    plot_accuracy_curves,
    plot_accuracy_matrix,
    plot_accuracy_vs_compute,
    summarize,
    write_report,
    write_summary_csv,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T = 3


def _result(method, seed, matrix, metrics, learn_seconds, samples_seen, trainable, status="complete", error=None):
    return {
        "format": 1,
        "method": method,
        "seed": seed,
        "scenario": "class-incremental",
        "data": "mnist",
        "status": status,
        "error": error,
        "config": {"method": method, "seed": seed},
        "stream": {
            "num_experiences": T,
            "num_classes": 6,
            "class_order": list(range(6)),
            "classes_per_experience": [[0, 1], [2, 3], [4, 5]],
            "class_names": [str(c) for c in range(6)],
        },
        "accuracy_matrix": matrix,
        "initial_accuracy": [0.0] * T,
        "metrics": metrics,
        "costs": {
            "learn_seconds": learn_seconds,
            "eval_seconds": [0.1] * len(learn_seconds),
            "samples_seen": samples_seen,
            "trainable_parameters": trainable,
            "total_parameters": trainable,
            "peak_memory_mb": 100.0,
        },
        "versions": {"lifelong": "0.1.0", "torch": "2.x", "python": "3.11"},
    }


def _metrics(final, aia, forgetting, bwt, fwt=0.0):
    return {
        "final_average_accuracy": final,
        "average_incremental_accuracy": aia,
        "forgetting": forgetting,
        "backward_transfer": bwt,
        "forward_transfer": fwt,
    }


# er: good (final 0.80 / 0.70); finetune: bad (final 0.30 / 0.40), plus one failed seed.
RUNS = [
    _result(
        "er",
        0,
        [[0.9, 0.0, 0.0], [0.8, 0.9, 0.0], [0.8, 0.7, 0.9]],
        _metrics(0.80, 0.85, 0.10, -0.10),
        [1.0, 2.0, 3.0],
        [100, 200, 300],
        1000,
    ),
    _result(
        "er",
        1,
        [[0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.6, 0.6, 0.9]],
        _metrics(0.70, 0.75, 0.30, -0.25, None),
        [2.0, 2.0, 2.0],
        [100, 200, 300],
        1000,
    ),
    _result(
        "finetune",
        0,
        [[0.9, 0.0, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 0.9]],
        _metrics(0.30, 0.55, 0.90, -0.90, None),
        [1.0, 1.0, 1.0],
        [50, 100, 150],
        500,
    ),
    _result(
        "finetune",
        1,
        [[0.9, 0.0, 0.0], [0.3, 0.9, 0.0], [0.1, 0.2, 0.9]],
        _metrics(0.40, 0.65, 0.75, -0.75, None),
        [1.0, 1.0, 2.0],
        [50, 100, 150],
        500,
    ),
    _result(
        "finetune",
        2,
        [[0.9, 0.0, 0.0]],
        _metrics(None, None, None, None, None),
        [1.0],
        [50],
        500,
        status="failed",
        error="NonFiniteLossError: loss is nan at step 7",
    ),
]


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


@pytest.fixture()
def group(tmp_path):
    g = tmp_path / "runs" / "default" / "class-incremental-mnist"
    for r in RUNS:
        _write(g / r["method"] / f"seed{r['seed']}" / "results.json", r)
        # files the report must ignore
        _write(g / r["method"] / f"seed{r['seed']}" / "config.json", r["config"])
        (g / r["method"] / f"seed{r['seed']}" / "metrics.jsonl").write_text("{}\n")
        (g / r["method"] / f"seed{r['seed']}" / "checkpoints").mkdir()
    return g


def _row(rows, method):
    (row,) = [r for r in rows if r["method"] == method]
    return row


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 100 and data.startswith(PNG_MAGIC)


# --------------------------------------------------------------------------- load


def test_load_results_groups_by_method_sorted_by_seed(group):
    # write seed 10 to check numeric (not lexical) seed order
    extra = dict(RUNS[0], seed=10)
    _write(group / "er" / "seed10" / "results.json", extra)
    res = load_results(group)
    assert list(res) == ["er", "finetune"]
    assert [r["seed"] for r in res["er"]] == [0, 1, 10]
    assert [r["seed"] for r in res["finetune"]] == [0, 1, 2]
    assert res["finetune"][2]["status"] == "failed"


def test_load_results_accepts_str_path(group):
    assert set(load_results(str(group))) == {"er", "finetune"}


def test_load_results_missing_or_empty_folder(tmp_path):
    with pytest.raises(RunDirError, match="no such folder"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty" / "er" / "seed0").mkdir(parents=True)
    with pytest.raises(RunDirError, match=r"no results\.json under .*empty.*lifelong run") as info:
        load_results(tmp_path / "empty")
    assert isinstance(info.value, LifelongError)


def test_load_results_hints_at_the_right_folder(group):
    with pytest.raises(RunDirError, match="method folder"):
        load_results(group / "er")
    with pytest.raises(RunDirError, match="several groups.*class-incremental-mnist"):
        load_results(group.parent)


def test_load_results_bad_json_names_the_file(group):
    bad = group / "er" / "seed1" / "results.json"
    bad.write_text('{"format": 1, "method": "er", ', encoding="utf-8")
    with pytest.raises(RunDirError, match="not valid JSON") as info:
        load_results(group)
    assert str(bad) in str(info.value)


def test_load_results_rejects_non_object_and_unknown_format(group):
    f = group / "er" / "seed1" / "results.json"
    f.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(RunDirError, match="JSON object"):
        load_results(group)
    _write(f, dict(RUNS[1], format=2))
    with pytest.raises(RunDirError, match="format 2"):
        load_results(group)


# --------------------------------------------------------------------------- summarize


def test_summarize_means_and_population_std(group):
    rows = summarize(load_results(group))
    er, ft = _row(rows, "er"), _row(rows, "finetune")

    assert er["n_seeds"] == 2 and er["n_complete"] == 2 and er["n_failed"] == 0
    assert er["final_average_accuracy_mean"] == pytest.approx(0.75)
    assert er["final_average_accuracy_std"] == pytest.approx(0.05)  # ddof=0
    assert er["forgetting_mean"] == pytest.approx(0.20)
    assert er["forgetting_std"] == pytest.approx(0.10)
    assert er["backward_transfer_mean"] == pytest.approx(-0.175)
    assert er["backward_transfer_std"] == pytest.approx(0.075)
    # forward transfer null in seed 1: skipped, one value left -> std 0
    assert er["forward_transfer_mean"] == pytest.approx(0.0)
    assert er["forward_transfer_std"] == 0.0
    # costs: learn seconds summed per seed (6, 6), samples seen = last cumulative value
    assert er["learn_seconds_mean"] == pytest.approx(6.0)
    assert er["learn_seconds_std"] == pytest.approx(0.0)
    assert er["samples_seen_mean"] == pytest.approx(300)
    assert er["trainable_parameters_mean"] == pytest.approx(1000)

    # the failed seed is counted and listed but not averaged in
    assert ft["n_seeds"] == 3 and ft["n_complete"] == 2 and ft["n_failed"] == 1
    assert ft["failed"] == [{"seed": 2, "status": "failed", "error": "NonFiniteLossError: loss is nan at step 7"}]
    assert ft["final_average_accuracy_mean"] == pytest.approx(0.35)
    assert ft["final_average_accuracy_std"] == pytest.approx(0.05)
    assert ft["learn_seconds_mean"] == pytest.approx(3.5)
    assert ft["learn_seconds_std"] == pytest.approx(0.5)
    # null for every seed -> None
    assert ft["forward_transfer_mean"] is None and ft["forward_transfer_std"] is None


def test_summarize_single_seed_has_zero_std():
    rows = summarize({"er": [RUNS[0]]})
    assert rows[0]["final_average_accuracy_std"] == 0.0
    assert rows[0]["final_average_accuracy_mean"] == pytest.approx(0.8)


def test_summarize_only_failed_runs_gives_none():
    (row,) = summarize({"finetune": [RUNS[4]]})
    assert row["n_complete"] == 0 and row["n_failed"] == 1
    assert row["final_average_accuracy_mean"] is None
    assert row["learn_seconds_mean"] is None


# --------------------------------------------------------------------------- csv


def test_write_summary_csv(group, tmp_path):
    rows = summarize(load_results(group))
    path = write_summary_csv(rows, tmp_path / "out" / "summary.csv")
    assert path == tmp_path / "out" / "summary.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    header = table[0]
    assert header[:2] == ["method", "n_seeds"]
    assert header[2:12] == [f"{m}_{s}" for m in report.METRICS for s in ("mean", "std")]
    for name in ("learn_seconds", "samples_seen", "trainable_parameters"):
        i = header.index(f"{name}_mean")
        assert header[i + 1] == f"{name}_std"
    data = {r[0]: dict(zip(header, r)) for r in table[1:]}
    assert set(data) == {"er", "finetune"}
    assert float(data["er"]["final_average_accuracy_mean"]) == pytest.approx(0.75)
    assert float(data["er"]["final_average_accuracy_std"]) == pytest.approx(0.05)
    assert data["finetune"]["n_seeds"] == "3"
    assert data["finetune"]["n_failed"] == "1"
    assert data["finetune"]["forward_transfer_mean"] == ""  # None -> empty cell
    # atomic write leaves no temporary files behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.csv"]


# --------------------------------------------------------------------------- plots


def test_plot_accuracy_matrix_full_and_partial(tmp_path):
    p = plot_accuracy_matrix(RUNS[0]["accuracy_matrix"], tmp_path / "m.png", "er")
    assert _is_png(p)
    # a failed run: fewer rows than columns, with a null cell
    p2 = plot_accuracy_matrix([[0.9, None, 0.0]], tmp_path / "sub" / "m2.png", "partial")
    assert _is_png(p2)


def test_plot_curves_and_compute(group, tmp_path):
    res = load_results(group)
    assert _is_png(plot_accuracy_curves(res, tmp_path / "curves.png"))
    assert _is_png(plot_accuracy_vs_compute(res, tmp_path / "compute.png"))
    # no completed runs at all still draws a (labelled, empty) figure
    only_failed = {"finetune": [RUNS[4]]}
    assert _is_png(plot_accuracy_curves(only_failed, tmp_path / "c2.png"))
    assert _is_png(plot_accuracy_vs_compute(only_failed, tmp_path / "v2.png"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "c2.png",
        "compute.png",
        "curves.png",
        "v2.png",
    ]


def test_incremental_curve_values():
    curve = plots._incremental_curve(RUNS[0])
    assert list(curve) == pytest.approx([90.0, 85.0, 80.0])
    mean = plots._mean_matrix([RUNS[0], RUNS[1]])
    assert mean[2, 0] == pytest.approx(0.7) and mean[1, 1] == pytest.approx(0.85)


# --------------------------------------------------------------------------- report


def test_write_report(group):
    path = write_report(group)
    assert path == group / "report.md"
    text = path.read_text(encoding="utf-8")

    assert text.startswith("# class-incremental on mnist")
    lines = text.splitlines()
    table = [l for l in lines if l.startswith("| ")]
    assert table[0].startswith("| method | final avg acc (%)")
    # sorted by final accuracy: er (75%) before finetune (35%)
    assert table[1].startswith("| er | 75.0 ± 5.0 | 80.0 ± 5.0 | 20.0 ± 10.0 | -17.5 ± 7.5 |")
    assert table[2].startswith("| finetune | 35.0 ± 5.0 |")
    assert table[2].rstrip().endswith("| 2 (1 failed) |")
    assert "| 300 |" in table[1] and "| 1,000 |" in table[1]

    # the failed run and its error
    assert "NonFiniteLossError: loss is nan at step 7" in text
    assert "`finetune` seed 2" in text

    # images embedded with relative paths, and the files exist and are PNGs
    for rel in (
        "plots/accuracy_curves.png",
        "plots/accuracy_vs_compute.png",
        "plots/accuracy_matrix_er.png",
        "plots/accuracy_matrix_finetune.png",
    ):
        assert f"]({rel})" in text
        assert _is_png(group / rel)

    # metrics section with the formulas
    assert "## Metrics" in text
    for phrase in ("R[T−1, j]", "mean_{j≤i} R[i, j]", "max_{k ∈ [j, T−2]}", "R[j, j]", "R[j−1, j] − initial[j]"):
        assert phrase in text
    # one definition per metric, taken from metrics.py
    for name in metrics.METRIC_NAMES:
        assert f"- **{metrics.METRIC_LABELS[name]}**: " in text
        assert metrics.METRIC_DESCRIPTIONS[name].replace("\n", "\n  ") in text

    summary = group / "summary.csv"
    assert summary.read_text(encoding="utf-8").startswith("method,n_seeds,")

    # nothing temporary left behind
    leftovers = [p for p in group.rglob("*.tmp")]
    assert leftovers == []


def test_write_report_is_repeatable(group):
    first = write_report(group).read_text(encoding="utf-8")
    second = write_report(group).read_text(encoding="utf-8")
    assert first == second


def test_write_report_bad_folder(tmp_path):
    with pytest.raises(RunDirError, match="no results.json"):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_write_report_bad_json_writes_nothing(group):
    (group / "er" / "seed0" / "results.json").write_text("not json", encoding="utf-8")
    with pytest.raises(RunDirError, match="seed0"):
        write_report(group)
    assert not (group / "report.md").exists() and not (group / "summary.csv").exists()


# --------------------------------------------------------------------------- terminal table


def test_format_results_table(group):
    text = format_results_table(summarize(load_results(group)))
    lines = text.splitlines()
    assert lines[0].split()[0] == "method"
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].startswith("er ") and lines[3].startswith("finetune ")
    assert "75.0 ± 5.0" in lines[2] and "35.0 ± 5.0" in lines[3]
    assert "2 (1 failed)" in lines[3]
    # fixed width: every data column ends at the same offset as the header's
    assert len({len(l) for l in lines[:2]}) == 1
    assert all(len(l) == len(lines[1]) for l in lines[2:])


def test_modules_do_not_import_torch_or_matplotlib():
    # stand in a bare lifelong.evaluation package so that whatever its __init__.py imports
    # (the run loop needs torch) does not count against the report modules; matplotlib
    # is imported only when a plot is drawn
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, types\n"
        "import lifelong\n"
        "pkg = types.ModuleType('lifelong.evaluation')\n"
        f"pkg.__path__ = [{str(Path(report.__file__).parent)!r}]\n"
        "sys.modules['lifelong.evaluation'] = pkg\n"
        "import lifelong.evaluation.report\n"
        "assert 'lifelong.evaluation.loop' not in sys.modules, 'the package __init__ ran'\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert not [m for m in sys.modules if m.startswith('matplotlib')], 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_reexports_the_names_it_had():
    # other modules and user code import these from lifelong.evaluation.report
    assert report.load_results is summary.load_results and report.summarize is summary.summarize
    assert report.write_summary_csv is summary.write_summary_csv
    assert report.format_results_table is summary.format_results_table
    assert report.plot_names is plots.plot_names
    assert report.plot_accuracy_matrix is plots.plot_accuracy_matrix
    assert report.METRICS == metrics.METRIC_NAMES and report.COSTS == summary.COSTS
    assert report.plot_names(["er", "a b"]) == [
        "accuracy_curves.png",
        "accuracy_vs_compute.png",
        "accuracy_matrix_er.png",
        "accuracy_matrix_a_b.png",
    ]
