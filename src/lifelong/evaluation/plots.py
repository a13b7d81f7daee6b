"""Plots of a finished experiment: accuracy-matrix heatmaps, accuracy curves, accuracy vs compute.

Each function draws on a matplotlib ``Figure`` with an Agg canvas (no pyplot global state) and
writes a PNG atomically. matplotlib is imported inside the functions, on first use, so that
importing lifelong (or reading results without plotting) never loads it. Accuracies are
fractions in ``[0, 1]`` in the inputs and percent on the axes.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifelong.evaluation.summary import _complete, _experiences, _number, summarize
from lifelong.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_accuracy_curves", "plot_accuracy_matrix", "plot_accuracy_vs_compute", "plot_names"]

_DPI = 100


def _new_figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save_png(fig: Figure, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return atomic_write_bytes(path, buf.getvalue())


def _matrix_array(R: Any, columns: int | None = None):
    """A float array of R (rows may be ragged or short), padded with NaN."""
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


def _mean_matrix(results: Sequence[Mapping]):
    """Element-wise mean over seeds of the accuracy matrices (NaN where no seed has a value)."""
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
        image = ax.imshow(
            np.ma.masked_invalid(arr), cmap=cmap, vmin=0.0, vmax=100.0, interpolation="nearest", aspect="equal"
        )
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
                        ax.text(
                            j,
                            i,
                            f"{arr[i, j]:.0f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="black" if arr[i, j] > 60 else "white",
                        )
    ax.set_title(title, fontsize=10)
    return _save_png(fig, path)


def _incremental_curve(result: Mapping):
    """Per learned experience i: mean_{j<=i} R[i, j], in percent (NaN where undefined)."""
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


def plot_accuracy_curves(results_by_method: Mapping[str, Sequence[Mapping]], path: str | os.PathLike) -> Path:
    """Accuracy after each experience: one line per method, mean over seeds ± std band.

    x is the number of experiences learned (1..T); y is the mean over ``j <= i``
    of ``R[i, j]`` in percent (the curve whose mean is the average incremental
    accuracy). Only completed seeds are used. Writes a PNG atomically.
    """
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


def plot_accuracy_vs_compute(results_by_method: Mapping[str, Sequence[Mapping]], path: str | os.PathLike) -> Path:
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
            ax.errorbar(
                [x],
                [y * 100.0],
                xerr=[xerr or 0.0],
                yerr=[(yerr or 0.0) * 100.0],
                fmt="o",
                color=color,
                capsize=3,
                markersize=5,
            )
            ax.annotate(row["method"], (x, y * 100.0), xytext=(4, 4), textcoords="offset points", fontsize=8)
        if xs and all(x > 0 for x in xs):
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")
            lo, hi = min(xs), max(xs)
            ax.set_xlim(lo / 2.0, hi * 2.0)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
            if hi / lo < 30:  # narrow range: also label the 2x and 5x minor ticks

                def minor(v: float, _: int) -> str:
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


def plot_names(methods: Iterable[str]) -> list[str]:
    """File names :func:`lifelong.evaluation.report.write_report` may write under ``plots/`` for these methods."""
    return [
        "accuracy_curves.png",
        "accuracy_vs_compute.png",
        *(f"accuracy_matrix_{_safe_name(m)}.png" for m in methods),
    ]


def _safe_name(method: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", method).strip("._") or "method"
