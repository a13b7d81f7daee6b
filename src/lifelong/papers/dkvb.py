"""Seed paper 26: *Discrete Key-Value Bottleneck* (Träuble et al., ICML 2023).

Claim (catalogue): on a class-incremental stream over a frozen pre-trained encoder,
without replay or task boundaries, the key-value bottleneck keeps far more than a
sequentially fine-tuned linear probe: final average accuracy >= probe + 20 points;
the keys stay bit-identical after initialisation; value rows that a task's data
never fetches stay bit-identical while that task is learned (localised updates).

``quick``: scikit-learn digits (64 raw pixel features standing in for a frozen
encoder), 5 tasks of 2 classes, seed 0 (seconds). ``full``: CLINC150 as frozen
all-MiniLM-L6-v2 features, 5 tasks of 30 intents, class orders of seeds 0, 1, 2
(minutes). Baselines: the linear probe (``finetune`` with no hidden layer, trained
in sequence) and, for reference, the cosine prototype classifier (``ncm``).
Run ``lifelong reproduce dkvb [--scale full]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper

#: the linear probe: sequential fine-tuning of a linear head (no replay)
LINEAR_PROBE = {"hidden": (), "epochs": 5, "lr": 0.1, "batch_size": 32}
MARGIN = 0.20


def _clinc_root() -> str | None:
    """``LIFELONG_DATA`` (left to the loader), else the workspace's ``../shared/data`` if it has CLINC150."""
    if os.environ.get("LIFELONG_DATA"):
        return None
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return str(shared) if (shared / "clinc150" / "data_full.json").exists() else None


def _stream(scale: str, seed: int):
    from lifelong.data import load_dataset, load_digits
    from lifelong.scenarios import class_incremental

    if scale == "quick":
        return class_incremental(load_digits(), tasks=5, seed=seed)
    data = load_dataset("clinc150", data_root=_clinc_root(), progress=False)
    return class_incremental(data, tasks=5, seed=seed)


def _final_accuracy(learner, stream) -> float:
    from lifelong.evaluation import accuracy

    return float(np.mean([accuracy(learner, *e.test_tensors(), e.task_id) for e in stream]))


def run_dkvb(stream, seed: int = 0, config: dict | None = None) -> dict:
    """Train DKVB on ``stream`` and check keys and locality after every experience.

    Returns final average accuracy, whether the keys stayed bit-identical from the
    moment they were initialised, whether every value row not fetched by an
    experience's training data stayed bit-identical during it, and the mean fraction
    of pairs each experience fetched.
    """
    from lifelong.methods import make_learner

    learner = make_learner("dkvb", config or {}, seed=seed)
    learner.prepare(stream[0].input_shape, stream.num_classes)
    learner.before_experience(stream[0])  # initialise (and freeze) the keys on unlabelled inputs
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
    return {"accuracy": _final_accuracy(learner, stream), "keys_frozen": keys_frozen, "local": local,
            "fetched_fraction": float(np.mean(fetched_fraction))}


def _baseline(name: str, config: dict, stream, seed: int) -> float:
    from lifelong.methods import make_learner

    learner = make_learner(name, config, seed=seed)
    for e in stream:
        learner.learn(e)
    return _final_accuracy(learner, stream)


def reproduce(scale: str = "quick") -> Claim:
    """DKVB vs a sequentially trained linear probe on a class-incremental stream (see the module docstring)."""
    seeds = (0,) if scale == "quick" else (0, 1, 2)
    rows = []
    for seed in seeds:
        stream = _stream(scale, seed)
        d = run_dkvb(stream, seed)
        d["probe"] = _baseline("finetune", LINEAR_PROBE, stream, seed)
        d["ncm"] = _baseline("ncm", {"metric": "cosine"}, stream, seed)
        rows.append(d)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("accuracy", "probe", "ncm", "fetched_fraction")}
    keys_frozen = all(r["keys_frozen"] for r in rows)
    local = all(r["local"] for r in rows)
    gap = mean["accuracy"] - mean["probe"]
    measured = {"dkvb_final_accuracy": round(mean["accuracy"], 4),
                "linear_probe_final_accuracy": round(mean["probe"], 4),
                "ncm_final_accuracy": round(mean["ncm"], 4),
                "dkvb_minus_probe": round(gap, 4),
                "keys_bit_identical": keys_frozen, "unfetched_values_bit_identical": local,
                "fraction_of_pairs_fetched_per_task": round(mean["fetched_fraction"], 4),
                "seeds": len(seeds)}
    for seed, r in zip(seeds, rows):
        measured[f"seed{seed}/dkvb"] = round(r["accuracy"], 4)
        measured[f"seed{seed}/probe"] = round(r["probe"], 4)
    data = ("digits (64 raw pixels), 5 tasks x 2 classes" if scale == "quick"
            else "CLINC150 MiniLM features, 5 tasks x 30 intents")
    return Claim(
        paper=PAPER.short_name,
        statement=("a discrete key-value bottleneck over a frozen encoder, with keys frozen after unsupervised "
                   "initialisation and only the fetched values trained, forgets far less than a linear probe "
                   "trained on the same class-incremental stream"),
        criterion=(f"mean final average accuracy of DKVB >= linear probe + {MARGIN:.2f} on {data} "
                   f"({len(seeds)} seed(s)); keys bit-identical after initialisation; value rows not fetched by "
                   "an experience bit-identical while it is learned"),
        measured=measured,
        held=bool(gap >= MARGIN and keys_frozen and local),
        scale=scale,
        notes=("DKVB: C=64 codebooks x M=256 pairs, 8-d keys from random projections, EMA k-means keys on the "
               "first experience's unlabelled inputs, zero-initialised values, SGD lr 0.3 (no momentum), clip 1.0, "
               "label smoothing 0.1, 10 epochs; probe: finetune hidden=() 5 epochs lr 0.1; ncm: cosine prototypes "
               "(reference, not part of the criterion)"),
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
