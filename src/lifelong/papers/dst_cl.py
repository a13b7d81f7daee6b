"""Paper 39: *Continual Learning with Dynamic Sparse Training: Exploring Algorithms for Effective Model
Updates* (Yildirim, Gok Yildirim, Sokar, Mocanu, Vanschoren; CPAL 2024, arXiv:2308.14831). Implemented by
:mod:`lifelong.methods.dst` (``dst``).

Checked on split MNIST with the task id at test: isolated per-task sparse sub-networks give exactly zero
backward transfer and keep far more than dense fine-tuning trained with the same (current-task) loss, for
every mask init / growth rule / density of the spec, paired per seed; every arm's lr is picked on a
validation split. Protocol in ``specs/dst-cl.toml``; full-scale table: benchmarks/sparse_hypernet_results.md.
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import ScaleSettings, load_spec

#: settings by scale name, from the spec (callers may add their own named settings)
SCALES = ScaleSettings("dst-cl")


class Runs(dict):
    """``{label: [run rows]}`` as :func:`measure` returns it, with ``tuned``: ``{label: (lr, {lr: val acc})}``."""

    tuned: dict


def variant_name(init: str, growth: str, density: float) -> str:
    """Short label of one DST variant."""
    return f"dst[{init},{growth},d={density:g}]"


def run_method(stream, name: str, config: dict, seed: int):
    """One run of ``name`` on ``stream``; returns the :class:`~lifelong.evaluation.Result`."""
    from lifelong.evaluation import run
    from lifelong.methods import make_learner

    return run(stream, make_learner(name, config, seed=seed), seed=seed, progress=False)


def _settings(scale) -> dict:
    return SCALES[scale] if isinstance(scale, str) else scale


def arms(spec: dict) -> dict[str, tuple[str, dict]]:
    """Every arm of ``spec`` (baselines, DST variants, reported references): ``{label: (method, config)}``.

    Configs hold the shared MLP and epochs but no lr (each arm's lr is tuned, see :func:`tune`).
    """
    base = {"epochs": spec["epochs"], "hidden": spec["hidden"]}
    out = {label: ("finetune", {**base, **cfg}) for label, cfg in spec["baselines"].items()}
    for i, g, d in spec["variants"]:
        out[variant_name(i, g, d)] = ("dst", {**base, **spec["dst"], "init": i, "growth": g, "density": d})
    for label in spec.get("reference_rows", []):
        ref = spec["references"][label]
        out[label] = (ref["method"], {**base, **ref["config"]})
    return out


def validation_data(data, spec: dict):
    """The training split cut into train / validation (``val_fraction``, seed ``tune_seed``): see
    :func:`lifelong.papers.common.validation_split`."""
    from lifelong.papers.common import validation_split

    return validation_split(data, spec["val_fraction"], spec["tune_seed"])


def tune(spec: dict, data) -> dict:
    """Each arm's lr from ``lr_grid``: the best final average accuracy on the validation stream.

    Every arm is tuned with :func:`lifelong.papers.common.pick_on_validation` over the same grid on the same
    validation stream (class order of ``tune_seed``). Returns ``{label: (lr, {lr: validation accuracy})}``.
    """
    from lifelong.papers.common import log_row, pick_on_validation
    from lifelong.scenarios import task_incremental

    grid = [float(v) for v in spec["lr_grid"]]
    val = task_incremental(validation_data(data, spec), tasks=spec["tasks"], seed=spec["tune_seed"])
    out = {}
    for label, (name, config) in arms(spec).items():
        if len(grid) == 1:
            out[label] = (grid[0], {})
            continue

        def score(lr, _name=name, _config=config):
            result = run_method(val, _name, {**_config, "lr": lr}, spec["tune_seed"])
            return result.metrics["final_average_accuracy"]

        lr, scores = pick_on_validation(grid, score)
        log_row("dst-cl", kind="tune", arm=label, lr=lr, scores={str(k): v for k, v in scores.items()})
        out[label] = (float(lr), scores)
    return out


def measure(scale="quick", data=None) -> Runs:
    """Every run at ``scale`` (a name in :data:`SCALES` or a settings dict), each arm at its tuned lr.

    Returns {label: [(final acc, BWT, learn seconds, samples seen, (trainable, total params))]} with the
    tuning record in ``.tuned``.
    """
    from lifelong.papers.common import load_data, log_row, run_row
    from lifelong.scenarios import task_incremental

    spec = _settings(scale)
    data = data if data is not None else load_data(spec["data"])
    tuned = tune(spec, data)
    runs = Runs()
    runs.tuned = tuned
    for seed in spec["seeds"]:
        stream = task_incremental(data, tasks=spec["tasks"], seed=seed)
        for label, (name, config) in arms(spec).items():
            row = run_row(run_method(stream, name, {**config, "lr": tuned[label][0]}, seed), "backward_transfer")
            log_row("dst-cl", kind="run", arm=label, seed=seed, acc=row[0], bwt=row[1])
            runs.setdefault(label, []).append(row)
    return runs


def reproduce(scale: str = "quick") -> Claim:
    """Check exact isolation and DST >> same-loss fine-tuning at ``scale`` (settings: ``specs/dst-cl.toml``)."""
    return check(load_spec("dst-cl", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Check exact isolation (BWT = 0) and DST >= same-loss dense fine-tuning + margin (paired) with ``settings``."""
    return summarize(measure(settings), scale, settings)


def summarize(runs: dict, scale: str, settings: dict | None = None) -> Claim:
    """The :class:`Claim` from the runs :func:`measure` returned (settings: ``settings`` or ``SCALES[scale]``)."""
    from lifelong.papers.common import paired, paired_measured

    spec = settings if settings is not None else SCALES[scale]
    gap, bwt_tol = spec["min_gap"], spec["max_abs_bwt"]
    tuned = getattr(runs, "tuned", {})
    baselines = list(spec["baselines"])
    acc = {k: [r[0] for r in v] for k, v in runs.items()}
    mean_acc = {k: float(np.mean(v)) for k, v in acc.items()}
    baseline_label = max(baselines, key=lambda k: mean_acc[k])
    variants = [variant_name(*v) for v in spec["variants"]]
    worst_bwt = max(abs(r[1]) for k in variants for r in runs[k])
    pairs = {k: paired(acc[k], acc[baseline_label], gap) for k in variants}
    worst = min(variants, key=lambda k: (pairs[k]["held"], pairs[k]["mean"]))
    measured: dict = {f"{k} final acc": round(v, 4) for k, v in mean_acc.items()}
    measured.update({f"{k} BWT": round(float(np.mean([r[1] for r in runs[k]])), 4) for k in runs})
    measured.update({f"{k} lr": tuned[k][0] for k in tuned})
    measured["baseline (dense fine-tune, same loss)"] = baseline_label
    measured["max |BWT| over DST runs"] = worst_bwt
    measured["min mean gap DST - baseline (points)"] = round(100 * min(p["mean"] for p in pairs.values()), 2)
    measured["variants held (paired)"] = f"{sum(p['held'] for p in pairs.values())}/{len(variants)}"
    above = sum(bool(p["lo"] > 0) for p in pairs.values()) if len(spec["seeds"]) >= 2 else "-"
    measured["variants whose paired gain is above 0 (95 % interval, any size)"] = f"{above}/{len(variants)}"
    measured.update(paired_measured(f"worst variant {worst} - baseline", pairs[worst]))
    seen = "finetune[adam,seen loss]"
    if seen in acc:
        measured.update(paired_measured(f"{baseline_label} - {seen}", paired(acc[baseline_label], acc[seen])))
    first = variants[0]
    for k in acc:
        if k.startswith("ablation:"):
            measured.update(paired_measured(f"{first} - {k}", paired(acc[first], acc[k])))
    uniform = [mean_acc[variant_name(i, g, d)] for i, g, d in spec["variants"] if i == "uniform" and d == 0.05]
    erk = [mean_acc[variant_name(i, g, d)] for i, g, d in spec["variants"] if i == "erk" and d == 0.05]
    if uniform and erk:
        measured["density 0.05: uniform - ERK mean (points, exploratory)"] = round(
            100 * (float(np.mean(uniform)) - float(np.mean(erk))), 2
        )
    measured["seeds"] = len(spec["seeds"])
    held = worst_bwt <= bwt_tol and all(p["held"] for p in pairs.values())
    grid = ", ".join(f"{v:g}" for v in spec["lr_grid"])
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "isolating per-task sparse sub-networks found by dynamic sparse training gives exactly zero "
            "backward transfer and keeps far more than dense fine-tuning, whatever the init / growth rule"
        ),
        criterion=(
            f"split MNIST, {spec['tasks']} tasks, task id at test, {len(spec['seeds'])} seed(s): |BWT| "
            f"<= {bwt_tol * 100:g} points for every DST variant ({len(variants)}), and for every variant the "
            "per-seed paired difference in final average accuracy against dense fine-tuning with the same "
            f"current-task loss, optimizer, MLP, epochs and batch has mean >= {gap * 100:g} points and a 95 % "
            f"interval above 0; every arm's lr picked from {{{grid}}} on a validation split"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            f"MLP 784-{'-'.join(map(str, spec['hidden']))}, {spec['epochs']} epochs/task, Adam, batch 64, "
            "prune-and-grow every 20 batches, growth scored on the dense gradient (official code); biases per "
            "task and new weights from the initial values (see lifelong/methods/dst.py); lr tuned on "
            f"{spec['val_fraction']:g} of the training images (seed {spec['tune_seed']}); "
            "full-scale table: benchmarks/sparse_hypernet_results.md"
        ),
    )


PAPER = Paper(
    number=39,
    short_name="dst-cl",
    title="Continual Learning with Dynamic Sparse Training: Exploring Algorithms for Effective Model Updates",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.dst",),
    arxiv="2308.14831",
    reproduce=reproduce,
)
