"""Write ``report.md`` for a finished experiment, from its ``results.json`` files alone.

:func:`write_report` loads and aggregates a group folder's runs (:mod:`lifelong.evaluation.summary`),
writes ``summary.csv`` and the PNG plots (:mod:`lifelong.evaluation.plots`) and assembles the
Markdown; metric names and definitions come from :mod:`lifelong.evaluation.metrics`. Every file is
written atomically (a temporary file, then ``os.replace``), so an interrupted report never leaves a
half file. The loading, table and plot functions are re-exported here, where they used to live.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from lifelong.evaluation.metrics import METRIC_DESCRIPTIONS, METRIC_LABELS, METRIC_NAMES
from lifelong.evaluation.plots import (
    _mean_matrix,
    _safe_name,
    plot_accuracy_curves,
    plot_accuracy_matrix,
    plot_accuracy_vs_compute,
    plot_names,
)
from lifelong.evaluation.summary import (
    _HEADER,
    COSTS,
    METRICS,
    TABLE_METRICS,
    _complete,
    _experiences,
    _table_cells,
    format_results_table,
    load_results,
    summarize,
    write_summary_csv,
)
from lifelong.fileio import atomic_write_bytes

__all__ = [
    "COSTS",
    "METRICS",
    "format_results_table",
    "load_results",
    "plot_accuracy_curves",
    "plot_accuracy_matrix",
    "plot_accuracy_vs_compute",
    "plot_names",
    "summarize",
    "write_report",
    "write_summary_csv",
]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(rows: Sequence[Mapping]) -> str:
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "|".join(["---"] + ["---:"] * (len(_HEADER) - 1)) + "|"]
    for cells in _table_cells(rows):
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def _facts(results_by_method: Mapping[str, Sequence[Mapping]], key: str) -> str:
    values = sorted({str(r.get(key)) for rs in results_by_method.values() for r in rs if r.get(key) is not None})
    return ", ".join(values) if values else "unknown"


_METRICS_INTRO = """\
## Metrics

`R[i, j]` is the accuracy on experience j's test set after learning experience i
(i, j = 0 … T−1); `initial[j]` is the accuracy on experience j before any learning.
Numbers are mean ± population standard deviation (ddof = 0) over completed seeds.
"""

_COSTS_TEXT = """\
Learn seconds are the total wall-clock training time over the stream, samples seen
the total training samples processed, trainable params the parameters updated.
"""


def _metrics_text() -> str:
    """The "Metrics" section: each metric's definition from :mod:`lifelong.evaluation.metrics`."""
    bullets = []
    for name in METRIC_NAMES:
        text = METRIC_DESCRIPTIONS[name]
        if name not in TABLE_METRICS:  # not a column of the results table: say where it is
            text += "\n(in `summary.csv`)"
        bullets.append(f"- **{METRIC_LABELS[name]}**: " + text.replace("\n", "\n  ") + ".")
    return "\n".join([_METRICS_INTRO, *bullets, "", _COSTS_TEXT])


def _feature_cache_lines(runs: Sequence[Mapping]) -> list[str]:
    """A "Feature cache" paragraph when the runs read a frozen encoder's cached outputs."""
    caches = [((r.get("data_info") or {}).get("feature_cache")) for r in runs]
    caches = [c for c in caches if c]
    if not caches:
        return []
    hits = sum(bool(c.get("hit")) for c in caches)
    saved = sum(float(c.get("saved_seconds") or 0.0) for c in caches)
    encoded = sum(float(c.get("encode_seconds") or 0.0) for c in caches)
    return [
        "## Feature cache",
        "",
        (
            f"The frozen encoder's outputs came from the on-disk feature cache in {hits} of "
            f"{len(caches)} runs, saving {saved:.1f} s of encoding in all; {encoded:.1f} s were "
            "spent encoding on cache misses."
        ),
        "",
    ]


def write_report(group_dir: str | os.PathLike, runs: Iterable[tuple[str, int]] | None = None) -> Path:
    """Render the experiment in ``group_dir`` from its ``results.json`` files (only ``runs``' when given).

    Writes, all atomically, into ``group_dir``:

    - ``summary.csv`` (see :func:`write_summary_csv`);
    - ``plots/accuracy_matrix_<method>.png``: the mean accuracy matrix over
      completed seeds, one per method with at least one completed seed;
    - ``plots/accuracy_curves.png`` and ``plots/accuracy_vs_compute.png``;
    - ``report.md``: title with scenario and data, the results table (best final
      accuracy first), failed or unfinished runs with their error, the plots
      (relative paths) and a section defining each metric.

    Returns the path of ``report.md``. Raises
    :class:`~lifelong.errors.RunDirError` as :func:`load_results` does.
    """
    root = Path(group_dir)
    results = load_results(root, runs)
    rows = summarize(results)
    write_summary_csv(rows, root / "summary.csv")

    plots = root / "plots"
    matrix_images: list[tuple[str, str]] = []
    for method, method_runs in results.items():
        done = _complete(method_runs)
        if not done:
            continue
        name = f"accuracy_matrix_{_safe_name(method)}.png"
        n = len(done)
        title = f"{method}: accuracy matrix (mean of {n} seed{'s' if n != 1 else ''})"
        plot_accuracy_matrix(_mean_matrix(done), plots / name, title)
        matrix_images.append((method, f"plots/{name}"))
    plot_accuracy_curves(results, plots / "accuracy_curves.png")
    plot_accuracy_vs_compute(results, plots / "accuracy_vs_compute.png")

    scenario, data = _facts(results, "scenario"), _facts(results, "data")
    all_runs = [r for rs in results.values() for r in rs]
    t_values = sorted({_experiences(r) for r in all_runs})
    classes = sorted({(r.get("stream") or {}).get("num_classes") for r in all_runs} - {None})
    seeds = sorted({r.get("seed") for r in all_runs}, key=lambda s: (not isinstance(s, int), s))

    lines = [f"# {scenario} on {data}", ""]
    facts = [
        f"{len(results)} method{'s' if len(results) != 1 else ''}",
        f"seeds {', '.join(str(s) for s in seeds)}",
        f"{'/'.join(str(t) for t in t_values)} experiences",
    ]
    if classes:
        facts.append(f"{'/'.join(str(c) for c in classes)} classes")
    lines += ["; ".join(facts) + ".", "", "## Results", "", _markdown_table(rows), ""]
    lines += [
        (
            "Sorted by final average accuracy. Mean ± std over completed seeds; "
            "forgetting and BWT in percentage points. Per-seed numbers are in each "
            "`<method>/seed<k>/results.json`, aggregates in `summary.csv`."
        ),
        "",
    ]
    lines += _feature_cache_lines(all_runs)

    unfinished = [(m, r) for m, rs in results.items() for r in rs if r.get("status", "complete") != "complete"]
    if unfinished:
        lines += ["## Failed or unfinished runs", ""]
        for method, r in unfinished:
            status = r.get("status")
            error = r.get("error") or (
                "still running or killed" if status == "running" else "no error message recorded"
            )
            done_rows = len(r.get("accuracy_matrix") or [])
            lines.append(
                f"- `{method}` seed {r.get('seed')} — {status} after "
                f"{done_rows} experience{'s' if done_rows != 1 else ''}: "
                f"{_md_escape(str(error))}"
            )
        lines.append("")

    lines += [
        "## Plots",
        "",
        "### Accuracy after each experience",
        "",
        "![Accuracy after each experience](plots/accuracy_curves.png)",
        "",
        "### Accuracy against compute",
        "",
        "![Final average accuracy against compute](plots/accuracy_vs_compute.png)",
        "",
    ]
    if matrix_images:
        lines += ["### Accuracy matrices", ""]
        for method, rel in matrix_images:
            lines += [f"![Accuracy matrix of {_md_escape(method)}]({rel})", ""]
    lines.append(_metrics_text())

    text = "\n".join(lines).rstrip("\n") + "\n"
    return atomic_write_bytes(root / "report.md", text.encode("utf-8"))
