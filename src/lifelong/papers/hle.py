"""Paper 8: *Online Continual Learning on Hierarchical Label Expansion* (HLE; Lee, Jung, Choi & Chun,
ICCV 2023).

The setting is :func:`lifelong.scenarios.hierarchical`; the method (PL-FMS: hierarchy-aware
pseudo-labelling, pseudo-label based memory management, flexible memory sampling) is
:mod:`lifelong.methods.hle`. :func:`check` compares HLE with ER per hierarchy level on digits
(protocol in ``specs/hle.toml``); :func:`run_comparison` also serves ``benchmarks/hle.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def __getattr__(name: str):
    if name == "DIGIT_PAIRS":  # the digits hierarchy, now in the spec (kept for older callers)
        return tuple(load_spec("hle", "quick")["coarse_labels"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_comparison(
    data,
    seeds,
    *,
    coarse_labels=None,
    coarse_fraction: float = 0.4,
    batch_size: int = 10,
    buffer_size: int = 200,
    lr: float = 1e-3,
    optimizer: str = "adam",
) -> dict:
    """Final coarse / fine accuracy of ER and HLE on hierarchical streams (one per seed).

    Returns ``{method: {"coarse": [...], "fine": [...], "seconds": [...]}}``.
    """
    from lifelong.evaluation import run
    from lifelong.methods.config import build_config
    from lifelong.methods.er import ER
    from lifelong.methods.hle import HLE
    from lifelong.scenarios.hierarchical import class_parents, hierarchical

    common = {"optimizer": optimizer, "lr": lr, "buffer_size": buffer_size}
    out = {m: {"coarse": [], "fine": [], "seconds": []} for m in ("er", "hle")}
    for seed in seeds:
        stream = hierarchical(data, coarse_fraction, seed=seed, coarse_labels=coarse_labels, batch_size=batch_size)
        configs = {"er": (ER, common), "hle": (HLE, {**common, "parents": tuple(class_parents(stream))})}
        for name, (cls, cfg) in configs.items():
            result = run(stream, cls(build_config(cls.config_class, cfg), seed=seed), seed=seed, progress=False)
            last = result.accuracy_matrix[-1]
            out[name]["coarse"].append(float(last[0]))
            out[name]["fine"].append(float(np.mean(last[1:])))
            out[name]["seconds"].append(float(sum(result.learn_seconds)))
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Run ER vs HLE on the digits hierarchy at ``scale`` (settings from ``specs/hle.toml``)."""
    return check(load_spec("hle", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """ER vs HLE per hierarchy level with ``settings``; held when HLE gains at the fine level and keeps coarse."""
    from lifelong.papers.common import load_data

    seeds, learner = settings["seeds"], settings["learner"]
    data = load_data(settings["data"])
    with torch.random.fork_rng(devices=[]):
        out = run_comparison(
            data,
            seeds,
            coarse_labels=settings["coarse_labels"],
            coarse_fraction=settings["coarse_fraction"],
            batch_size=settings["batch_size"],
            buffer_size=learner["buffer_size"],
            lr=learner["lr"],
            optimizer=learner["optimizer"],
        )
    mean = {(m, lv): float(np.mean(out[m][lv])) for m in out for lv in ("coarse", "fine")}
    fine_gain = mean[("hle", "fine")] - mean[("er", "fine")]
    coarse_gap = mean[("hle", "coarse")] - mean[("er", "coarse")]
    measured = {f"{lv}_acc/{m}": round(v, 4) for (m, lv), v in mean.items()}
    measured.update(
        {f"{lv}_acc_per_seed/{m}": ", ".join(f"{a:.3f}" for a in out[m][lv]) for m in out for lv in ("coarse", "fine")}
    )
    measured["fine_gain"] = round(fine_gain, 4)
    measured["coarse_gap"] = round(coarse_gap, 4)
    gain, gap = settings["min_fine_gain"], settings["min_coarse_gap"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "on an online hierarchical label expansion stream, HLE's hierarchy-aware pseudo-labelling and "
            "memory management beat ER at the fine level without losing coarse accuracy"
        ),
        criterion=(
            f"mean final fine accuracy >= ER + {gain * 100:g} points and mean final coarse accuracy >= ER "
            f"{'-' if gap < 0 else '+'} {abs(gap) * 100:g} point(s)"
        ),
        measured=measured,
        held=bool(fine_gain >= gain and coarse_gap >= gap),
        scale=scale,
        notes=(
            f"digits, coarse = digit pairs, {settings['coarse_fraction']:.0%} coarse-labelled first, fine revealed "
            f"per coarse class; online batch {settings['batch_size']}, one pass; memory {learner['buffer_size']}; "
            f"MLP 256-256, {learner['optimizer'].capitalize()} {learner['lr']:g}; seeds {seeds}"
        ),
    )


PAPER = Paper(
    number=8,
    short_name="hle",
    title="Online Continual Learning on Hierarchical Label Expansion",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.hle", "lifelong.scenarios.hierarchical"),
    arxiv="2308.14374",
    reproduce=reproduce,
)
