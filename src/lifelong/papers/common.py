"""Protocol helpers shared by several paper reproductions (reproduction machinery, not library code).

Data and streams built from a spec's settings (:func:`load_data`, :func:`digits_tasks`,
:func:`clinc_stream`, :func:`fscil_stream`, :func:`teacher_student_data`), one run's final
accuracy (:func:`final_accuracy`) or record (:func:`run_row`), and small summaries
(:func:`gap_closed`, :func:`mean`). Paper modules import these, never each other.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def clinc_data_root() -> str:
    """Where CLINC150 is looked for: the library's data root (``LIFELONG_DATA``, else ``~/.cache/lifelong/data``)."""
    from lifelong.data.text import default_data_root

    return str(default_data_root())


def clinc_available() -> bool:
    """Whether the CLINC150 files are on disk under :func:`clinc_data_root` (no download)."""
    from pathlib import Path

    root = Path(clinc_data_root())
    return any((root / sub / "data_full.json").exists() for sub in ("", "clinc150"))


def load_data(cfg: dict):
    """The dataset ``cfg["name"]`` loaded with the other keys of ``cfg`` as loader arguments.

    CLINC150 is read from :func:`clinc_data_root` without a progress bar.
    """
    from lifelong.data import load_dataset

    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    if cfg["name"] == "clinc150":
        kwargs = {"data_root": clinc_data_root(), "progress": False, **kwargs}
    return load_dataset(cfg["name"], **kwargs)


def class_subset(x: torch.Tensor, y: torch.Tensor, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of ``classes`` (out of 10), relabelled ``0..len(classes)-1`` in the given order."""
    keep = torch.isin(y, torch.tensor(classes))
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], remap[y[keep]]


def digits_tasks(knowledge, task):
    """(knowledge train, knowledge test, task train, task test) as (x, y) pairs from scikit-learn digits.

    Images are flattened (64 values in [0, 1]); each class group is relabelled from 0.
    """
    from lifelong.data import load_digits

    d = load_digits()
    xtr, xte = d.x_train.flatten(1), d.x_test.flatten(1)
    return (
        class_subset(xtr, d.y_train, knowledge),
        class_subset(xte, d.y_test, knowledge),
        class_subset(xtr, d.y_train, task),
        class_subset(xte, d.y_test, task),
    )


def digits_split(seed: int, train_fraction: float = 0.8):
    """scikit-learn digits (pixels / 16) split at random with ``seed``: ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_train = int(train_fraction * len(y))
    return x[perm[:n_train]], y[perm[:n_train]], x[perm[n_train:]], y[perm[n_train:]]


def teacher_student_data(n_train: int, n_test: int, *, seed: int, dim: int = 64, hidden: int = 128, classes: int = 10):
    """Synthetic classification data from a random teacher, generated with a seeded Generator.

    Inputs ``x ~ N(0, I_dim)``; label ``argmax(tanh(x W1) W2)`` with Gaussian ``W1, W2``
    scaled by ``1/sqrt(fan_in)``. Returns ``(x_train, y_train, x_test, y_test)``.
    """
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = torch.randn(n, dim, generator=g)
    w1 = torch.randn(dim, hidden, generator=g) / math.sqrt(dim)
    w2 = torch.randn(hidden, classes, generator=g) / math.sqrt(hidden)
    y = (torch.tanh(x @ w1) @ w2).argmax(1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def clinc_stream(data_cfg: dict):
    """The CLINC150 class-incremental stream of the pre-trained-model reproductions: one domain per experience.

    ``data_cfg`` holds the loader arguments (e.g. ``domains``, ``max_per_class``); the
    class order is CLINC's domain order (``class_incremental(seed=-1)``).
    """
    from lifelong.scenarios import class_incremental

    data = load_data({"name": "clinc150", **data_cfg})
    tasks = len(set(data.coarse_labels))
    return class_incremental(data, tasks=tasks, seed=-1)


def fscil_stream(cfg: dict, seed: int):
    """A few-shot class-incremental stream from ``cfg``: ``data`` (loader settings), ``base_classes``,
    ``ways``, ``shots``, ``sessions`` and ``natural_order`` (classes in the dataset's order, else seeded)."""
    return fscil_stream_of(load_data(cfg["data"]), cfg, seed)


def fscil_stream_of(data, cfg: dict, seed: int):
    """The few-shot class-incremental stream of :func:`fscil_stream` over an already loaded ``data``."""
    from lifelong.scenarios.fewshot import few_shot_incremental

    kw = {"class_order": list(range(data.num_classes))} if cfg["natural_order"] else {}
    return few_shot_incremental(
        data,
        base_classes=cfg["base_classes"],
        ways=cfg["ways"],
        shots=cfg["shots"],
        sessions=cfg["sessions"],
        seed=seed,
        **kw,
    )


def fscil_label(cfg: dict) -> str:
    """A short description of the FSCIL stream setting ``cfg`` (see :func:`fscil_stream`)."""
    data = "CLINC150 MiniLM features" if cfg["data"]["name"] == "clinc150" else cfg["data"]["name"]
    return (
        f"{data}: {cfg['base_classes']} base classes + {cfg['sessions']} sessions x {cfg['ways']}-way "
        f"{cfg['shots']}-shot"
    )


def final_accuracy(name: str, config: dict, stream, seed: int = 0) -> tuple[float, np.ndarray]:
    """Final average accuracy (mean of the last row of R) of method ``name`` and the matrix ``R``."""
    from lifelong.evaluation import run
    from lifelong.methods import make_learner

    result = run(stream, make_learner(name, config, seed=seed), seed=seed, progress=False)
    R = np.asarray(result.accuracy_matrix)
    return float(R[-1].mean()), R


def run_row(result, metric: str) -> tuple:
    """(final average accuracy, ``result.metrics[metric]``, learn seconds, samples seen, (trainable, total params)).

    The per-run record of the DST (arXiv:2308.14831) and DPHN (arXiv:2209.07712) reproductions.
    """
    m = result.metrics
    return (
        m["final_average_accuracy"],
        m[metric],
        float(sum(result.learn_seconds)),
        int(result.samples_seen[-1]),
        (int(result.trainable_parameters), int(result.total_parameters)),
    )


def gap_closed(method: float, base: float, bound: float) -> float:
    """Fraction of the gap from ``base`` to ``bound`` that ``method`` closes (negative if below ``base``)."""
    return (method - base) / (bound - base) if bound != base else float("nan")


def sci(x: float) -> str:
    """``x`` in short scientific form, as the protocol writes it (``0.001`` -> ``1e-3``)."""
    mantissa, exponent = f"{x:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def mean(values) -> float:
    """Plain arithmetic mean of a non-empty sequence (``sum / len``, no numpy rounding differences)."""
    values = list(values)
    return sum(values) / len(values)


__all__ = [
    "clinc_data_root",
    "clinc_available",
    "load_data",
    "class_subset",
    "digits_tasks",
    "digits_split",
    "teacher_student_data",
    "clinc_stream",
    "fscil_stream",
    "fscil_label",
    "final_accuracy",
    "run_row",
    "gap_closed",
    "sci",
    "mean",
]


def paired(a, b, margin: float = 0.0) -> dict:
    """Per-seed paired differences ``a - b``: mean, standard error, 95 % t-interval and the verdict at ``margin``.

    ``held`` needs the mean difference >= ``margin`` and, with two or more seeds, the lower
    end of the interval above 0 (the gain is not noise); one seed judges the mean alone.
    """
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    m = float(d.mean())
    if n >= 2:
        se = float(d.std(ddof=1) / np.sqrt(n))
        half = float(stats.t.ppf(0.975, n - 1) * se)
    else:
        se = half = float("nan")
    lo, hi = m - half, m + half
    held = m >= margin - 1e-12 and (n < 2 or lo > 0)
    return {"mean": m, "se": se, "lo": lo, "hi": hi, "n": n, "margin": margin, "held": bool(held)}


def clinc_order(data, order: str, seed: int) -> list[int]:
    """A class order of CLINC150: ``domains`` (one domain per experience, domain order rotated by ``seed``,
    so consecutive experiences are unrelated domains) or ``mixed`` (a random permutation by ``seed``)."""
    groups: dict[int, list[int]] = {}
    for c, dom in enumerate(data.coarse_labels):
        groups.setdefault(int(dom), []).append(c)
    doms = sorted(groups)
    if order == "domains":
        k = seed % len(doms)
        return [c for dom in doms[k:] + doms[:k] for c in groups[dom]]
    if order == "mixed":
        g = torch.Generator().manual_seed(seed)
        return torch.randperm(data.num_classes, generator=g).tolist()
    raise ValueError(f"order must be 'domains' or 'mixed', got {order!r}")


def clinc_pair(data_cfg: dict, order: str, seed: int):
    """(stream over frozen MiniLM features, stream over token ids) of CLINC150 with the same class order.

    One experience per domain's worth of classes (15 intents); ``order`` as :func:`clinc_order`.
    """
    from lifelong.scenarios import class_incremental

    feats = load_data({"name": "clinc150", **data_cfg})
    tokens = load_data({"name": "clinc150", "representation": "tokens", **data_cfg})
    tasks = len(set(feats.coarse_labels))
    classes = clinc_order(feats, order, seed)
    return (
        class_incremental(feats, tasks=tasks, class_order=classes),
        class_incremental(tokens, tasks=tasks, class_order=classes),
    )


def log_row(paper: str, **fields) -> None:
    """Append one finished run's numbers to the JSON-lines file ``LIFELONG_REPRO_LOG`` names (when set).

    Long reproductions report each run as it ends, so a cut-off run still leaves its numbers.
    """
    import json
    import os

    path = os.environ.get("LIFELONG_REPRO_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"paper": paper, **fields}) + "\n")


def pick_on_validation(grid, score) -> tuple:
    """The value of ``grid`` whose ``score(value)`` (higher is better, measured on a validation split) is highest.

    Returns ``(best, {value: score})``; ties go to the earlier grid value, so a grid listed from the
    most conservative setting up keeps it when nothing is gained. Every arm of a comparison is tuned
    with this same function over its own copy of one grid.
    """
    grid = list(grid)
    if not grid:
        raise ValueError("pick_on_validation needs a non-empty grid")
    scores = {}
    for value in grid:
        scores[value] = float(score(value))
    best = max(grid, key=lambda v: (scores[v], -grid.index(v)))
    return best, scores


def paired_measured(name: str, p: dict, digits: int = 4) -> dict:
    """The entries of a :func:`paired` result for a claim's ``measured`` dict, keyed ``name/mean`` etc."""
    return {
        f"{name}/{k}": (round(p[k], digits) if isinstance(p[k], float) else p[k])
        for k in ("mean", "se", "lo", "hi", "n")
    }


def gates_measured(verdicts: dict, controls: dict | None = None) -> dict:
    """A claim's ``measured`` entries for its paired gates (``verdicts``: gate -> :func:`paired` result, plus a
    ``"held"`` flag that is skipped) and for its controls (name -> whether the control was judged held)."""
    out: dict = {}
    for key, p in verdicts.items():
        if key != "held":
            out.update(paired_measured(key, p))
    for name, held in (controls or {}).items():
        out[f"control held: {name} (must be False)"] = held
    return out


__all__ += ["paired", "clinc_order", "clinc_pair", "log_row", "pick_on_validation", "paired_measured", "gates_measured"]


def validation_split(data, fraction: float, seed: int):
    """``data``'s training split cut into train / validation (stratified ``fraction``, ``seed``).

    The returned dataset's test split is validation data held out of the training examples, so tuning
    on it never sees the test split.
    """
    from lifelong.data.dataset import Dataset

    return Dataset.from_arrays(
        f"{data.name}-val", data.x_train, data.y_train, data.class_names, test_fraction=fraction, seed=seed
    )


__all__ += ["validation_split", "fscil_stream_of"]
