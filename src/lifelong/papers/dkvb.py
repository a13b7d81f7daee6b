"""Paper 26: *Discrete Key-Value Bottleneck* (Träuble et al., ICML 2023).

Claim: on a class-incremental stream over a frozen encoder, without replay or task boundaries,
the key-value bottleneck (:mod:`lifelong.methods.dkvb`) keeps far more than a sequentially
fine-tuned linear probe, its keys stay frozen after initialisation and its updates are local
(values no input fetched stay unchanged). Protocol in ``specs/dkvb.toml`` (digits at quick
scale, CLINC150 MiniLM features at full). Run ``lifelong reproduce dkvb [--scale full]``.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


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


def reproduce(scale: str = "quick") -> Claim:
    """DKVB vs a sequentially trained linear probe at ``scale`` (settings from ``specs/dkvb.toml``)."""
    return check(load_spec("dkvb", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """DKVB vs a sequentially trained linear probe on a class-incremental stream with ``settings``."""
    from lifelong.papers.common import load_data
    from lifelong.scenarios import class_incremental

    seeds, margin = settings["seeds"], settings["margin"]
    data = load_data(settings["data"])
    rows = []
    for seed in seeds:
        stream = class_incremental(data, tasks=settings["tasks"], seed=seed)
        d = run_dkvb(stream, seed, settings["dkvb"])
        d["probe"] = _baseline("finetune", settings["probe"], stream, seed)
        d["ncm"] = _baseline("ncm", settings["ncm"], stream, seed)
        rows.append(d)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("accuracy", "probe", "ncm", "fetched_fraction")}
    keys_frozen = all(r["keys_frozen"] for r in rows)
    local = all(r["local"] for r in rows)
    gap = mean["accuracy"] - mean["probe"]
    measured = {
        "dkvb_final_accuracy": round(mean["accuracy"], 4),
        "linear_probe_final_accuracy": round(mean["probe"], 4),
        "ncm_final_accuracy": round(mean["ncm"], 4),
        "dkvb_minus_probe": round(gap, 4),
        "keys_bit_identical": keys_frozen,
        "unfetched_values_bit_identical": local,
        "fraction_of_pairs_fetched_per_task": round(mean["fetched_fraction"], 4),
        "seeds": len(seeds),
    }
    for seed, r in zip(seeds, rows):
        measured[f"seed{seed}/dkvb"] = round(r["accuracy"], 4)
        measured[f"seed{seed}/probe"] = round(r["probe"], 4)
    what = "CLINC150 MiniLM features" if settings["data"]["name"] == "clinc150" else settings["data"]["name"]
    what += f", {settings['tasks']} tasks x {stream.num_classes // settings['tasks']} classes"
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "a discrete key-value bottleneck over a frozen encoder, with keys frozen after unsupervised "
            "initialisation and only the fetched values trained, forgets far less than a linear probe "
            "trained on the same class-incremental stream"
        ),
        criterion=(
            f"mean final average accuracy of DKVB >= linear probe + {margin:.2f} on {what} "
            f"({len(seeds)} seed(s)); keys bit-identical after initialisation; value rows not fetched by "
            "an experience bit-identical while it is learned"
        ),
        measured=measured,
        held=bool(gap >= margin and keys_frozen and local),
        scale=scale,
        notes=(
            "DKVB: C=64 codebooks x M=256 pairs, 8-d keys from random projections, EMA k-means keys on the "
            "first experience's unlabelled inputs, zero-initialised values, SGD lr 0.3 (no momentum), clip 1.0, "
            "label smoothing 0.1, 10 epochs; probe: finetune hidden=() 5 epochs lr 0.1; ncm: cosine prototypes "
            "(reference, not part of the criterion)"
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
