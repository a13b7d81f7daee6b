"""Paper 26: *Discrete Key-Value Bottleneck* (Träuble et al., ICML 2023, arXiv 2207.11240).

Claim: on a class-incremental stream over a frozen encoder, without replay or task boundaries,
the key-value bottleneck (:mod:`lifelong.methods.dkvb`) keeps far more than a sequentially
fine-tuned linear probe, its keys stay frozen after initialisation and its updates are local
(values no input fetched stay unchanged). Both arms get the same epochs and each its own lr from
one grid, picked on a validation split; the keys are fitted on an unlabelled split held out of
the training data (no example of it is in the stream). Protocol in ``specs/dkvb.toml`` (digits
at quick scale, CLINC150 MiniLM features at full). Run ``lifelong reproduce dkvb [--scale full]``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def _final_accuracy(learner, stream) -> float:
    from lifelong.evaluation import accuracy

    return float(np.mean([accuracy(learner, *e.test_tensors(), e.task_id) for e in stream]))


def run_dkvb(stream, seed: int = 0, config: dict | None = None, unlabelled: torch.Tensor | None = None) -> dict:
    """Train DKVB on ``stream`` and check keys and locality after every experience.

    The keys are fitted on ``unlabelled`` inputs (default: the first experience's training
    inputs, labels unused). Returns final average accuracy, whether the keys stayed
    bit-identical from the moment they were initialised, whether every value row not
    fetched by an experience's training data stayed bit-identical during it, and the mean
    fraction of pairs each experience fetched.
    """
    from lifelong.methods import make_learner

    learner = make_learner("dkvb", config or {}, seed=seed)
    learner.prepare(stream[0].input_shape, stream.num_classes)
    if unlabelled is None:
        learner.before_experience(stream[0])
    else:
        learner.init_keys(unlabelled)
    keys = learner.bottleneck.keys.clone()
    local, fetched_fraction = True, []
    for e in stream:
        fetched = learner.fetched(e.train_tensors()[0])
        before = learner.bottleneck.values.detach().clone()
        learner.learn(e)
        after = learner.bottleneck.values.detach()
        local &= bool(torch.equal(after[~fetched], before[~fetched]))
        fetched_fraction.append(float(fetched.float().mean()))
    keys_frozen = bool(torch.equal(learner.bottleneck.keys, keys))
    return {
        "accuracy": _final_accuracy(learner, stream),
        "keys_frozen": keys_frozen,
        "local": local,
        "fetched_fraction": float(np.mean(fetched_fraction)),
    }


def _baseline(name: str, config: dict, stream, seed: int) -> float:
    from lifelong.methods import make_learner

    learner = make_learner(name, config, seed=seed)
    for e in stream:
        learner.learn(e)
    return _final_accuracy(learner, stream)


def split_data(settings: dict):
    """``(stream data, tuning data, unlabelled inputs)`` from the spec's data and fractions.

    The unlabelled split is a stratified ``unlabelled_fraction`` of the training set (labels
    dropped), held out of the stream. The tuning data has the same training examples and,
    as its evaluation split, CLINC150's validation split, else a stratified
    ``val_fraction`` of the training set held out of both (the test split is never used).
    """
    from lifelong.data.dataset import stratified_split
    from lifelong.papers.common import load_data

    cfg = settings["data"]
    data = load_data(cfg)
    x, y = data.x_train, data.y_train
    if cfg["name"] == "clinc150":
        val = load_data({**cfg, "eval_split": "val"})
        xv, yv = val.x_test, val.y_test
    else:
        keep, held = (torch.as_tensor(i) for i in stratified_split(y.numpy(), settings["val_fraction"], seed=0))
        xv, yv, x, y = x[held], y[held], x[keep], y[keep]
    keep, unl = (torch.as_tensor(i) for i in stratified_split(y.numpy(), settings["unlabelled_fraction"], seed=1))
    stream_data = dataclasses.replace(data, x_train=x[keep], y_train=y[keep])
    tune_data = dataclasses.replace(stream_data, x_test=xv, y_test=yv)
    return stream_data, tune_data, x[unl]


def reproduce(scale: str = "quick") -> Claim:
    """DKVB vs a sequentially trained linear probe at ``scale`` (settings from ``specs/dkvb.toml``)."""
    return check(load_spec("dkvb", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """DKVB vs a sequentially trained linear probe on a class-incremental stream, paired per seed."""
    from lifelong.papers.common import log_row, paired, paired_measured, pick_on_validation
    from lifelong.scenarios import class_incremental

    seeds, margin, tasks = settings["seeds"], settings["margin"], settings["tasks"]
    stream_data, tune_data, unlabelled = split_data(settings)
    tune_stream = class_incremental(tune_data, tasks=tasks, seed=settings["tune_seed"])
    grid = settings["lr_grid"]
    dkvb_lr, dkvb_scores = pick_on_validation(
        grid, lambda lr: run_dkvb(tune_stream, 0, {**settings["dkvb"], "lr": lr}, unlabelled)["accuracy"]
    )
    probe_lr, probe_scores = pick_on_validation(
        grid, lambda lr: _baseline("finetune", {**settings["probe"], "lr": lr}, tune_stream, 0)
    )
    log_row("dkvb", part="tuning", dkvb=dkvb_scores, probe=probe_scores)
    rows = []
    for seed in seeds:
        stream = class_incremental(stream_data, tasks=tasks, seed=seed)
        d = run_dkvb(stream, seed, {**settings["dkvb"], "lr": dkvb_lr}, unlabelled)
        d["probe"] = _baseline("finetune", {**settings["probe"], "lr": probe_lr}, stream, seed)
        d["ncm"] = _baseline("ncm", settings["ncm"], stream, seed)
        log_row("dkvb", seed=seed, dkvb=d["accuracy"], probe=d["probe"], ncm=d["ncm"])
        rows.append(d)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("accuracy", "probe", "ncm", "fetched_fraction")}
    keys_frozen = all(r["keys_frozen"] for r in rows)
    local = all(r["local"] for r in rows)
    p = paired([r["accuracy"] for r in rows], [r["probe"] for r in rows], margin)
    measured = {
        "dkvb_final_accuracy": round(mean["accuracy"], 4),
        "linear_probe_final_accuracy": round(mean["probe"], 4),
        "ncm_final_accuracy": round(mean["ncm"], 4),
        "dkvb_minus_probe": round(p["mean"], 4),
        **paired_measured("dkvb-probe", p),
        "dkvb_lr": dkvb_lr,
        "probe_lr": probe_lr,
        **{f"val/dkvb@{k}": round(v, 4) for k, v in dkvb_scores.items()},
        **{f"val/probe@{k}": round(v, 4) for k, v in probe_scores.items()},
        "keys_bit_identical": keys_frozen,
        "unfetched_values_bit_identical": local,
        "fraction_of_pairs_fetched_per_task": round(mean["fetched_fraction"], 4),
        "unlabelled_key_examples": len(unlabelled),
        "seeds": len(seeds),
    }
    for seed, r in zip(seeds, rows):
        measured[f"seed{seed}/dkvb"] = round(r["accuracy"], 4)
        measured[f"seed{seed}/probe"] = round(r["probe"], 4)
    what = "CLINC150 MiniLM features" if settings["data"]["name"] == "clinc150" else settings["data"]["name"]
    what += f", {tasks} tasks x {stream_data.num_classes // tasks} classes"
    epochs = settings["dkvb"].get("epochs", 10)
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "a discrete key-value bottleneck over a frozen encoder, with keys frozen after unsupervised "
            "initialisation and only the fetched values trained, forgets far less than a linear probe "
            "trained on the same class-incremental stream"
        ),
        criterion=(
            f"final average accuracy of DKVB - linear probe, paired per seed ({len(seeds)} seed(s), 95 % "
            f"t-interval): mean >= {margin:.2f} and interval above 0, on {what}, both arms {epochs} epochs per "
            f"task, each arm's lr picked from {grid} on the validation split; keys bit-identical after "
            "initialisation; value rows not fetched by an experience bit-identical while it is learned"
        ),
        measured=measured,
        held=bool(p["held"] and keys_frozen and local),
        scale=scale,
        notes=(
            "DKVB: C=64 codebooks x M=256 pairs, 8-d keys from random projections, EMA k-means keys on an "
            f"unlabelled {settings['unlabelled_fraction']:.0%} of the training set held out of the stream, "
            "zero-initialised values, SGD (no momentum), clip 1.0, label smoothing 0.1; probe: finetune "
            "hidden=() with the same epochs and batch size; lr per arm on validation (tuning order of seed "
            f"{settings['tune_seed']}); ncm: cosine prototypes (reference, not part of the criterion)"
        ),
    )


PAPER = Paper(
    number=26,
    short_name="dkvb",
    title="Discrete Key-Value Bottleneck",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.dkvb",),
    arxiv="2207.11240",
    reproduce=reproduce,
)
