"""Read a finished experiment's ``results.json`` files and aggregate them over seeds.

A group folder holds ``<group_dir>/<method>/seed<k>/results.json``. This module loads those
files (no torch, no matplotlib), takes means and population standard deviations (ddof=0) over
each method's *completed* seeds (failed and running seeds are counted, never averaged in; null
metrics are skipped), and writes ``summary.csv`` atomically or prints a terminal table.
Accuracies in ``results.json`` are fractions in ``[0, 1]``; tables show them in percent.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lifelong.errors import RunDirError
from lifelong.evaluation.metrics import METRIC_NAMES
from lifelong.evaluation.result import RESULTS_FORMAT
from lifelong.fileio import atomic_write_bytes, loads_strict

__all__ = ["COSTS", "METRICS", "format_results_table", "load_results", "summarize", "write_summary_csv"]

#: Standard metrics, in the order tables and CSV columns show them.
METRICS: tuple[str, ...] = METRIC_NAMES

#: Cost quantities aggregated per seed: total learn seconds, total training
#: samples seen (the last entry of the cumulative list), trainable parameters.
COSTS: tuple[str, ...] = ("learn_seconds", "samples_seen", "trainable_parameters")

#: Metrics shown in the results table (all of them are in ``summary.csv``).
TABLE_METRICS: tuple[str, ...] = (
    "final_average_accuracy",
    "average_incremental_accuracy",
    "forgetting",
    "backward_transfer",
)

_STATUSES = ("complete", "failed", "running")


# --- loading ---


def load_results(group_dir: str | os.PathLike, runs: Iterable[tuple[str, int]] | None = None) -> dict[str, list[dict]]:
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
        raise RunDirError(f"no such folder: {root}; run `lifelong run` first or point at a run folder")
    files = sorted(
        p for p in root.glob("*/seed*/results.json") if p.is_file() and re.fullmatch(r"seed\d+", p.parent.name)
    )
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
    return f"no results.json under {root}; run `lifelong run` first or point at a run folder{hint}"


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
        raise RunDirError(
            f"{file} holds {', '.join(wrong)}, not this folder's run; delete it and run "
            "`lifelong run --resume <experiment folder>` to redo that seed"
        )


def _read_results_file(file: Path) -> dict:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"cannot read {file}: {exc}") from exc
    try:
        data = loads_strict(text)
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):
            raise RunDirError(
                f"{file} holds {exc} (results files are strict JSON); delete it and run "
                "`lifelong run --resume <experiment folder>` to redo that seed"
            ) from exc
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


# --- aggregation ---


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


def _experiences(result: Mapping) -> int:
    """The stream's number of experiences, or the accuracy matrix's size when the file lacks it."""
    stream = result.get("stream") or {}
    t = stream.get("num_experiences")
    if isinstance(t, int) and t > 0:
        return t
    matrix = result.get("accuracy_matrix") or []
    return max([len(matrix)] + [len(r) for r in matrix])


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


# --- terminal table (report.md shows the same cells as Markdown) ---

_HEADER = (
    "method",
    "final avg acc (%)",
    "avg incremental acc (%)",
    "forgetting (%)",
    "BWT (%)",
    "learn seconds",
    "samples seen",
    "trainable params",
    "seeds",
)


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
        cells.append(
            [
                str(row.get("method")),
                *(_fmt_pct(*_mean_and_std(row, name)) for name in TABLE_METRICS),
                _fmt_seconds(*_mean_and_std(row, "learn_seconds")),
                _fmt_count(*_mean_and_std(row, "samples_seen")),
                _fmt_count(*_mean_and_std(row, "trainable_parameters")),
                _fmt_seeds(row),
            ]
        )
    return cells


def _mean_and_std(row: Mapping, name: str) -> tuple[float | None, float | None]:
    return row.get(f"{name}_mean"), row.get(f"{name}_std")


def format_results_table(rows: Sequence[Mapping]) -> str:
    """The results table as fixed-width plain text for the terminal.

    Same columns and order as the Markdown table of report.md
    (:func:`lifelong.evaluation.report.write_report`):
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
