"""Render a finished experiment from its JSON files alone.

A run of ``lifelong run`` leaves one *group folder* per (scenario, data) pair::

    <group_dir>/<method>/seed<k>/results.json

This module reads those files (no torch needed), aggregates them over seeds and
writes, beside the method folders, ``summary.csv``, ``report.md`` and PNG plots
under ``plots/``. Every file is written atomically: a temporary file in the same
folder, then ``os.replace``, so an interrupted report never leaves a half file.

Aggregation rules (see :func:`summarize`): means and population standard
deviations (``ddof=0``) are taken over the *completed* seeds of a method; failed
and still-running seeds are counted and listed, never averaged in, because their
accuracy matrices stop early. A metric that is ``null`` in a results file (for
example forward transfer with a single experience) is skipped for that seed; a
metric that is ``null`` for every seed aggregates to ``None``.

Accuracies in ``results.json`` are fractions in ``[0, 1]``; tables and plots show
them in percent.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from lifelong.errors import RunDirError
from lifelong.fileio import atomic_write_bytes, loads_strict

__all__ = [
    "METRICS",
    "COSTS",
    "load_results",
    "summarize",
    "write_summary_csv",
    "plot_accuracy_matrix",
    "plot_accuracy_curves",
    "plot_accuracy_vs_compute",
    "write_report",
    "format_results_table",
]

RESULTS_FORMAT = 1

#: Standard metrics, in the order tables and CSV columns show them.
METRICS: tuple[str, ...] = (
    "final_average_accuracy",
    "average_incremental_accuracy",
    "forgetting",
    "backward_transfer",
    "forward_transfer",
)

#: Cost quantities aggregated per seed: total learn seconds, total training
#: samples seen (the last entry of the cumulative list), trainable parameters.
COSTS: tuple[str, ...] = ("learn_seconds", "samples_seen", "trainable_parameters")

_STATUSES = ("complete", "failed", "running")
_DPI = 100


# --------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------- #

def load_results(group_dir: str | os.PathLike,
                 runs: Iterable[tuple[str, int]] | None = None) -> dict[str, list[dict]]:
    """Read every ``<method>/seed<k>/results.json`` under ``group_dir`` (only ``runs`` when given).

    ``runs`` lists the ``(method, seed)`` pairs of one experiment: other folders
    (a copied ``seed0.bak``, a method of an earlier experiment) are left out.

    Returns a dict mapping each method name to its results dicts (the parsed
    JSON, format 1), sorted by seed; methods are in alphabetical order. The
    method name is the file's ``"method"`` field (falling back to the folder
    name) and the seed its ``"seed"`` field (falling back to the ``seed<k>``
    folder name).

    Raises :class:`~lifelong.errors.RunDirError` when the folder does not exist,
    holds no ``results.json`` files, or when a file is not valid JSON, not a JSON
    object, or of an unknown format (the message names the file).
    """
    root = Path(group_dir)
    if not root.is_dir():
        raise RunDirError(
            f"no such folder: {root}; run `lifelong run` first or point at a run folder"
        )
    files = sorted(p for p in root.glob("*/seed*/results.json")
                   if p.is_file() and re.fullmatch(r"seed\d+", p.parent.name))
    if runs is not None:
        wanted = {(str(m), f"seed{int(k)}") for m, k in runs}
        files = [p for p in files if (p.parent.parent.name, p.parent.name) in wanted]
    if not files:
        raise RunDirError(_no_results_message(root))

    by_method: dict[str, list[tuple[int, str, dict]]] = {}
    for file in files:
        data = _read_results_file(file)
        if runs is not None:  # an experiment's own folders: the file must be that run's
            _check_belongs(file, data)
        method = data.get("method") or file.parent.parent.name
        data["method"] = str(method)
        seed = data.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            match = re.fullmatch(r"seed(\d+)", file.parent.name)
            seed = int(match.group(1)) if match else -1
            data["seed"] = seed
        data.setdefault("status", "complete")
        by_method.setdefault(str(method), []).append((seed, str(file), data))

    return {
        method: [d for _, _, d in sorted(entries, key=lambda e: (e[0], e[1]))]
        for method, entries in sorted(by_method.items())
    }


def _no_results_message(root: Path) -> str:
    hint = ""
    if (root / "results.json").is_file():
        hint = f" ({root} is a seed folder; point at the folder two levels up)"
    elif any(root.glob("seed*/results.json")):
        hint = f" ({root} is a method folder; point at its parent {root.parent})"
    else:
        groups = sorted({p.parent.parent.parent.name for p in root.glob("*/*/seed*/results.json")})
        if groups:
            hint = f" ({root} holds several groups: {', '.join(groups)}; point at one of them)"
    return (
        f"no results.json under {root}; run `lifelong run` first or point at a run folder{hint}"
    )


def _check_belongs(file: Path, data: dict) -> None:
    """Refuse a results file whose method, seed or size is not that of the folder it lies in."""
    seed = f"seed{data.get('seed')}"
    rows = len(data.get("accuracy_matrix") or [])
    want = (data.get("stream") or {}).get("num_experiences") if isinstance(data.get("stream"), dict) else None
    wrong = []
    if data.get("method") != file.parent.parent.name:
        wrong.append(f"method {data.get('method')!r}")
    if seed != file.parent.name:
        wrong.append(f"seed {data.get('seed')!r}")
    if data.get("status") == "complete" and isinstance(want, int) and rows != want:
        wrong.append(f"{rows} of {want} experiences while 'complete'")
    if wrong:
        raise RunDirError(f"{file} holds {', '.join(wrong)}, not this folder's run; delete it and run "
                          "`lifelong run --resume <experiment folder>` to redo that seed")


def _read_results_file(file: Path) -> dict:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"cannot read {file}: {exc}") from exc
    try:
        data = loads_strict(text)
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):
            raise RunDirError(f"{file} holds {exc} (results files are strict JSON); delete it and run "
                              "`lifelong run --resume <experiment folder>` to redo that seed") from exc
        raise RunDirError(
            f"{file} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "delete it and run `lifelong run --resume <experiment folder>` to redo that seed, or fix the file"
        ) from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{file} does not hold a JSON object; it is not a lifelong results file")
    fmt = data.get("format", RESULTS_FORMAT)
    if fmt != RESULTS_FORMAT:
        raise RunDirError(
            f"{file} has results format {fmt!r}; this version of lifelong reads format "
            f"{RESULTS_FORMAT}; re-render it with the lifelong version that wrote it"
        )
    lacking = [k for k in ("method", "status", "accuracy_matrix", "metrics") if k not in data]
    if lacking or data.get("status") not in _STATUSES:
        what = f"lacks {', '.join(lacking)}" if lacking else f"has status {data.get('status')!r}"
        raise RunDirError(
            f"{file} {what}, so it is not a whole lifelong results file; delete it and run "
            "`lifelong run --resume <experiment folder>` to redo that seed"
        )
    matrix = data.get("accuracy_matrix", [])
    if matrix is None:
        matrix = []
    if not isinstance(matrix, list) or not all(isinstance(row, list) for row in matrix):
        raise RunDirError(f"{file}: 'accuracy_matrix' must be a list of rows (lists of numbers)")
    data["accuracy_matrix"] = matrix
    return data


# --------------------------------------------------------------------------- #
# aggregation
# --------------------------------------------------------------------------- #

def _number(value: Any) -> float | None:
    """A finite float, or None for null / non-numeric / non-finite values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mean_std(values: Iterable[Any]) -> tuple[float | None, float | None]:
    """Mean and population std (ddof=0) of the non-null values; (None, None) if none."""
    xs = [x for x in (_number(v) for v in values) if x is not None]
    if not xs:
        return None, None
    mean = math.fsum(xs) / len(xs)
    var = math.fsum((x - mean) ** 2 for x in xs) / len(xs)
    return mean, math.sqrt(var)


def _run_costs(result: Mapping) -> dict[str, float | None]:
    costs = result.get("costs") or {}
    learn = costs.get("learn_seconds")
    learn_total = None
    if isinstance(learn, list):
        vals = [_number(v) for v in learn]
        learn_total = math.fsum(v for v in vals if v is not None) if learn else None
    else:
        learn_total = _number(learn)
    seen = costs.get("samples_seen")
    if isinstance(seen, list):
        seen_total = _number(seen[-1]) if seen else None
    else:
        seen_total = _number(seen)
    return {
        "learn_seconds": learn_total,
        "samples_seen": seen_total,
        "trainable_parameters": _number(costs.get("trainable_parameters")),
    }


def _metric_names(results_by_method: Mapping[str, Sequence[Mapping]]) -> list[str]:
    names = list(METRICS)
    extra: set[str] = set()
    for results in results_by_method.values():
        for r in results:
            for key, value in (r.get("metrics") or {}).items():
                if key not in names and (value is None or _number(value) is not None):
                    extra.add(key)
    return names + sorted(extra)


def _complete(results: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in results if r.get("status", "complete") == "complete"]


def summarize(results_by_method: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """Aggregate results over seeds: one row (dict) per method, in input order.

    Each row holds:

    - ``method``; ``n_seeds`` (results files found, any status);
      ``n_complete``, ``n_failed``, ``n_running`` (status counts);
    - ``failed``: a list of ``{"seed", "status", "error"}`` for seeds that did not
      complete (failed or still running);
    - for every metric (the standard :data:`METRICS`, then any other numeric metric
      found, alphabetically) and for every cost in :data:`COSTS`:
      ``<name>_mean`` and ``<name>_std``.

    Means and population standard deviations (ddof=0, so 0.0 for one seed) are
    over the *completed* seeds; null values are skipped; a quantity that is null
    for every completed seed (or a method with no completed seed) gives ``None``.
    """
    names = _metric_names(results_by_method)
    rows: list[dict] = []
    for method, results in results_by_method.items():
        counts = {s: 0 for s in _STATUSES}
        failed = []
        for r in results:
            status = str(r.get("status", "complete"))
            counts[status] = counts.get(status, 0) + 1
            if status != "complete":
                failed.append({"seed": r.get("seed"), "status": status, "error": r.get("error")})
        done = _complete(results)
        row: dict[str, Any] = {
            "method": method,
            "n_seeds": len(results),
            "n_complete": counts["complete"],
            "n_failed": counts["failed"],
            "n_running": counts["running"],
            "failed": failed,
        }
        for name in names:
            mean, std = _mean_std((r.get("metrics") or {}).get(name) for r in done)
            row[f"{name}_mean"], row[f"{name}_std"] = mean, std
        run_costs = [_run_costs(r) for r in done]
        for name in COSTS:
            mean, std = _mean_std(c[name] for c in run_costs)
            row[f"{name}_mean"], row[f"{name}_std"] = mean, std
        rows.append(row)
    return rows


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_summary_csv(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """Write :func:`summarize` rows to ``path`` as CSV, atomically.

    Columns: ``method``, ``n_seeds``, then ``<name>_mean``, ``<name>_std`` pairs
    (metrics first, then costs, in the rows' order), then the status counts
    ``n_complete``, ``n_failed``, ``n_running``. ``None`` is an empty cell.
    Returns the path written.
    """
    pairs: list[str] = []
    for row in rows:
        for key in row:
            if key.endswith("_mean"):
                base = key[: -len("_mean")]
                if base not in pairs:
                    pairs.append(base)
    columns = ["method", "n_seeds"]
    for base in pairs:
        columns += [f"{base}_mean", f"{base}_std"]
    columns += ["n_complete", "n_failed", "n_running"]

    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


# --------------------------------------------------------------------------- #
# plotting (matplotlib Figure + Agg canvas; no pyplot global state)
# --------------------------------------------------------------------------- #

def _new_figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save_png(fig, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return atomic_write_bytes(path, buf.getvalue())


def _matrix_array(R: Any, columns: int | None = None):
    """A float array of R (rows may be ragged or short), padded with NaN."""
    import numpy as np

    if isinstance(R, np.ndarray):
        arr = np.asarray(R, dtype=float)
        if arr.ndim != 2:
            raise ValueError(f"accuracy matrix must be 2-D, got shape {arr.shape}")
        if columns is not None and arr.shape[1] < columns:
            arr = np.pad(arr, ((0, 0), (0, columns - arr.shape[1])), constant_values=np.nan)
        return arr
    rows = list(R)
    width = max([len(r) for r in rows] + [columns or 0])
    arr = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            x = _number(v)
            if x is not None:
                arr[i, j] = x
    return arr


def _experiences(result: Mapping) -> int:
    stream = result.get("stream") or {}
    t = stream.get("num_experiences")
    if isinstance(t, int) and t > 0:
        return t
    matrix = result.get("accuracy_matrix") or []
    return max([len(matrix)] + [len(r) for r in matrix])


def _mean_matrix(results: Sequence[Mapping]):
    """Element-wise mean over seeds of the accuracy matrices (NaN where no seed has a value)."""
    import warnings

    import numpy as np

    if not results:
        return np.zeros((0, 0))
    t = max(_experiences(r) for r in results)
    stack = np.full((len(results), t, t), np.nan)
    for k, r in enumerate(results):
        arr = _matrix_array(r.get("accuracy_matrix") or [], t)
        n, m = min(arr.shape[0], t), min(arr.shape[1], t)
        stack[k, :n, :m] = arr[:n, :m]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def plot_accuracy_matrix(R: Any, path: str | os.PathLike, title: str = "Accuracy matrix") -> Path:
    """Draw the accuracy matrix ``R[i, j]`` (fractions) as a heatmap in percent.

    ``R`` is a 2-D array or a list of rows; rows may be fewer than columns (a run
    that stopped early) and missing cells are drawn grey. Rows are "after
    learning experience i", columns "tested on experience j". Cells are labelled
    with their value when the matrix is at most 15 wide. Writes a PNG atomically
    and returns its path.
    """
    import numpy as np

    arr = _matrix_array(R) * 100.0
    n_rows, n_cols = arr.shape if arr.size else (0, 0)
    side = min(max(3.0, 0.45 * max(n_rows, n_cols) + 1.8), 12.0)
    fig, (ax,) = _new_figure(side + 0.8, side)
    if arr.size == 0:
        ax.text(0.5, 0.5, "no accuracy values", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        from matplotlib import colormaps

        cmap = colormaps["viridis"].with_extremes(bad="#d0d0d0")
        image = ax.imshow(np.ma.masked_invalid(arr), cmap=cmap, vmin=0.0, vmax=100.0,
                          interpolation="nearest", aspect="equal")
        fig.colorbar(image, ax=ax, label="accuracy (%)", shrink=0.85)
        ax.set_xlabel("tested on experience j")
        ax.set_ylabel("after learning experience i")
        step = max(1, math.ceil(max(n_rows, n_cols) / 15))
        ax.set_xticks(range(0, n_cols, step))
        ax.set_yticks(range(0, n_rows, step))
        if max(n_rows, n_cols) <= 15:
            for i in range(n_rows):
                for j in range(n_cols):
                    if np.isfinite(arr[i, j]):
                        ax.text(j, i, f"{arr[i, j]:.0f}", ha="center", va="center", fontsize=7,
                                color="black" if arr[i, j] > 60 else "white")
    ax.set_title(title, fontsize=10)
    return _save_png(fig, path)


def _incremental_curve(result: Mapping):
    """Per learned experience i: mean_{j<=i} R[i, j], in percent (NaN where undefined)."""
    import numpy as np

    arr = _matrix_array(result.get("accuracy_matrix") or [])
    out = np.full(arr.shape[0], np.nan)
    for i in range(arr.shape[0]):
        vals = arr[i, : i + 1]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            out[i] = vals.mean() * 100.0
    return out


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_accuracy_curves(results_by_method: Mapping[str, Sequence[Mapping]],
                         path: str | os.PathLike) -> Path:
    """Accuracy after each experience: one line per method, mean over seeds ± std band.

    x is the number of experiences learned (1..T); y is the mean over ``j <= i``
    of ``R[i, j]`` in percent (the curve whose mean is the average incremental
    accuracy). Only completed seeds are used. Writes a PNG atomically.
    """
    import warnings

    import numpy as np

    fig, (ax,) = _new_figure(6.0, 4.0)
    methods = [(m, _complete(rs)) for m, rs in results_by_method.items()]
    methods = [(m, rs) for m, rs in methods if rs]
    max_t = 1
    for color, (method, results) in zip(_colors(len(methods)), methods):
        curves = [_incremental_curve(r) for r in results]
        t = max(len(c) for c in curves)
        if t == 0:
            continue
        max_t = max(max_t, t)
        stack = np.full((len(curves), t), np.nan)
        for k, c in enumerate(curves):
            stack[k, : len(c)] = c
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stack, axis=0)
            std = np.nanstd(stack, axis=0)
        x = np.arange(1, t + 1)
        label = f"{method} (n={len(results)})" if len(results) > 1 else method
        ax.plot(x, mean, marker="o", markersize=3, color=color, label=label)
        if len(results) > 1:
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    if methods:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("experiences learned")
    ax.set_ylabel("accuracy on experiences seen (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(0.8, max_t + 0.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.set_title("Accuracy after each experience", fontsize=10)
    return _save_png(fig, path)


def plot_accuracy_vs_compute(results_by_method: Mapping[str, Sequence[Mapping]],
                             path: str | os.PathLike) -> Path:
    """Final average accuracy (%) against compute, one marker per method.

    Two panels: x = total training samples seen, and x = total learn seconds
    (log scale where every value is positive). Markers are means over completed
    seeds with error bars of one std in both directions, annotated with the
    method name. Writes a PNG atomically.
    """
    rows = summarize({m: _complete(rs) for m, rs in results_by_method.items()})
    fig, axes = _new_figure(9.0, 4.0, ncols=2)
    panels = (("samples_seen", "training samples seen"), ("learn_seconds", "learn seconds"))
    colors = _colors(len(rows))
    for ax, (key, xlabel) in zip(axes, panels):
        xs = []
        for color, row in zip(colors, rows):
            x, xerr = row[f"{key}_mean"], row[f"{key}_std"]
            y, yerr = row["final_average_accuracy_mean"], row["final_average_accuracy_std"]
            if x is None or y is None:
                continue
            xs.append(x)
            ax.errorbar([x], [y * 100.0], xerr=[xerr or 0.0], yerr=[(yerr or 0.0) * 100.0],
                        fmt="o", color=color, capsize=3, markersize=5)
            ax.annotate(row["method"], (x, y * 100.0), xytext=(4, 4), textcoords="offset points",
                        fontsize=8)
        if xs and all(x > 0 for x in xs):
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")
            lo, hi = min(xs), max(xs)
            ax.set_xlim(lo / 2.0, hi * 2.0)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
            if hi / lo < 30:  # narrow range: also label the 2x and 5x minor ticks
                def minor(v, _):
                    lead = v / 10 ** math.floor(math.log10(v) + 1e-9)
                    return f"{v:,.6g}" if round(lead, 6) in (2.0, 5.0) else ""
                ax.xaxis.set_minor_formatter(FuncFormatter(minor))
            else:
                ax.xaxis.set_minor_formatter(NullFormatter())
        if not xs:
            ax.text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel + (" (log scale)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel("final average accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy against compute", fontsize=10)
    return _save_png(fig, path)


# --------------------------------------------------------------------------- #
# tables and report
# --------------------------------------------------------------------------- #

_HEADER = ("method", "final avg acc (%)", "avg incremental acc (%)", "forgetting (%)",
           "BWT (%)", "learn seconds", "samples seen", "trainable params", "seeds")


def _fmt_pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean * 100:.1f} ± {(std or 0.0) * 100:.1f}"


def _fmt_seconds(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    digits = 2 if mean < 10 else 1 if mean < 1000 else 0
    return f"{mean:,.{digits}f} ± {(std or 0.0):,.{digits}f}"


def _fmt_count(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    text = f"{mean:,.0f}"
    if std:
        text += f" ± {std:,.0f}"
    return text


def _fmt_seeds(row: Mapping) -> str:
    text = str(row.get("n_complete", row.get("n_seeds", 0)))
    extra = []
    if row.get("n_failed"):
        extra.append(f"{row['n_failed']} failed")
    if row.get("n_running"):
        extra.append(f"{row['n_running']} running")
    return f"{text} ({', '.join(extra)})" if extra else text


def _sorted_rows(rows: Sequence[Mapping]) -> list[Mapping]:
    """Rows by final average accuracy, best first; methods without one last."""
    def key(row: Mapping):
        acc = row.get("final_average_accuracy_mean")
        return (acc is None, -(acc or 0.0), str(row.get("method")))
    return sorted(rows, key=key)


def _table_cells(rows: Sequence[Mapping]) -> list[list[str]]:
    cells = []
    for row in _sorted_rows(rows):
        g = lambda name: (row.get(f"{name}_mean"), row.get(f"{name}_std"))  # noqa: E731
        cells.append([
            str(row.get("method")),
            _fmt_pct(*g("final_average_accuracy")),
            _fmt_pct(*g("average_incremental_accuracy")),
            _fmt_pct(*g("forgetting")),
            _fmt_pct(*g("backward_transfer")),
            _fmt_seconds(*g("learn_seconds")),
            _fmt_count(*g("samples_seen")),
            _fmt_count(*g("trainable_parameters")),
            _fmt_seeds(row),
        ])
    return cells


def format_results_table(rows: Sequence[Mapping]) -> str:
    """The results table as fixed-width plain text for the terminal.

    Same columns and order as the Markdown table of :func:`write_report`:
    methods sorted by final average accuracy (best first); percentages with one
    decimal as ``mean ± std`` over completed seeds; ``n/a`` where undefined.
    """
    body = _table_cells(rows)
    table = [list(_HEADER)] + body
    widths = [max(len(r[c]) for r in table) for c in range(len(_HEADER))]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    out = [line(_HEADER), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in body]
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(rows: Sequence[Mapping]) -> str:
    lines = ["| " + " | ".join(_HEADER) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(_HEADER) - 1)) + "|"]
    for cells in _table_cells(rows):
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def plot_names(methods: Iterable[str]) -> list[str]:
    """File names :func:`write_report` may write under ``plots/`` for these methods."""
    return ["accuracy_curves.png", "accuracy_vs_compute.png",
            *(f"accuracy_matrix_{_safe_name(m)}.png" for m in methods)]


def _safe_name(method: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", method).strip("._") or "method"


def _facts(results_by_method: Mapping[str, Sequence[Mapping]], key: str) -> str:
    values = sorted({str(r.get(key)) for rs in results_by_method.values() for r in rs
                     if r.get(key) is not None})
    return ", ".join(values) if values else "unknown"


_METRICS_TEXT = """\
## Metrics

`R[i, j]` is the accuracy on experience j's test set after learning experience i
(i, j = 0 … T−1); `initial[j]` is the accuracy on experience j before any learning.
Numbers are mean ± population standard deviation (ddof = 0) over completed seeds.

- **Final average accuracy**: the mean over j of R[T−1, j] — accuracy on every
  experience after learning the whole stream.
- **Average incremental accuracy**: (1/T) Σ_i mean_{j≤i} R[i, j] — the accuracy on
  the experiences seen so far, averaged over the T steps of the stream.
- **Forgetting**: the mean over j < T−1 of ( max_{k ∈ [j, T−2]} R[k, j] − R[T−1, j] ) —
  how far each earlier experience fell from its best accuracy (lower is better).
- **Backward transfer (BWT)**: the mean over j < T−1 of ( R[T−1, j] − R[j, j] ) — how
  learning later experiences changed accuracy on earlier ones (negative = forgetting).
- **Forward transfer (FWT)**: the mean over j ≥ 1 of ( R[j−1, j] − initial[j] ) — how
  much learning earlier experiences helps an experience before it is learned
  (in `summary.csv`).

Learn seconds are the total wall-clock training time over the stream, samples seen
the total training samples processed, trainable params the parameters updated.
"""


def _feature_cache_lines(runs: Sequence[Mapping]) -> list[str]:
    """A "Feature cache" paragraph when the runs read a frozen encoder's cached outputs."""
    caches = [((r.get("data_info") or {}).get("feature_cache")) for r in runs]
    caches = [c for c in caches if c]
    if not caches:
        return []
    hits = sum(bool(c.get("hit")) for c in caches)
    saved = sum(float(c.get("saved_seconds") or 0.0) for c in caches)
    encoded = sum(float(c.get("encode_seconds") or 0.0) for c in caches)
    return ["## Feature cache", "",
            f"The frozen encoder's outputs came from the on-disk feature cache in {hits} of "
            f"{len(caches)} runs, saving {saved:.1f} s of encoding in all; {encoded:.1f} s were "
            "spent encoding on cache misses.", ""]


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
    for method, runs in results.items():
        done = _complete(runs)
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
    facts = [f"{len(results)} method{'s' if len(results) != 1 else ''}",
             f"seeds {', '.join(str(s) for s in seeds)}",
             f"{'/'.join(str(t) for t in t_values)} experiences"]
    if classes:
        facts.append(f"{'/'.join(str(c) for c in classes)} classes")
    lines += ["; ".join(facts) + ".", "", "## Results", "", _markdown_table(rows), ""]
    lines += ["Sorted by final average accuracy. Mean ± std over completed seeds; "
              "forgetting and BWT in percentage points. Per-seed numbers are in each "
              "`<method>/seed<k>/results.json`, aggregates in `summary.csv`.", ""]
    lines += _feature_cache_lines(all_runs)

    unfinished = [(m, r) for m, rs in results.items() for r in rs
                  if r.get("status", "complete") != "complete"]
    if unfinished:
        lines += ["## Failed or unfinished runs", ""]
        for method, r in unfinished:
            status = r.get("status")
            error = r.get("error") or ("still running or killed" if status == "running"
                                       else "no error message recorded")
            done_rows = len(r.get("accuracy_matrix") or [])
            lines.append(f"- `{method}` seed {r.get('seed')} — {status} after "
                         f"{done_rows} experience{'s' if done_rows != 1 else ''}: "
                         f"{_md_escape(str(error))}")
        lines.append("")

    lines += ["## Plots", "", "### Accuracy after each experience", "",
              "![Accuracy after each experience](plots/accuracy_curves.png)", "",
              "### Accuracy against compute", "",
              "![Final average accuracy against compute](plots/accuracy_vs_compute.png)", ""]
    if matrix_images:
        lines += ["### Accuracy matrices", ""]
        for method, rel in matrix_images:
            lines += [f"![Accuracy matrix of {_md_escape(method)}]({rel})", ""]
    lines.append(_METRICS_TEXT)

    text = "\n".join(lines).rstrip("\n") + "\n"
    return atomic_write_bytes(root / "report.md", text.encode("utf-8"))
