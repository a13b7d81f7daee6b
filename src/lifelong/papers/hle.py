"""Seed paper 8: *Online Continual Learning on Hierarchical Label Expansion* (HLE; Lee, Jung,
Choi & Chun, ICCV 2023).

The setting is :func:`lifelong.scenarios.hierarchical`; the method (PL-FMS: hierarchy-aware
pseudo-labelling, pseudo-label based memory management, flexible memory sampling) is
:mod:`lifelong.methods.hle`.

Reproduction (scaled down, as in the catalogue): scikit-learn's 8x8 digits with a
2-level tree (5 coarse classes = digit pairs {0,1}, {2,3}, ..., {8,9}); 40% of each
digit's training examples arrive first with their coarse label, then the fine labels
are revealed one coarse class at a time (5 fine experiences); online (one pass,
batches of 10); memory 200; MLP 256-256, Adam lr 1e-3 for both methods (the
library's online setting, not tuned here). Baseline: ER with a reservoir buffer of
the same size, coarse and fine labels as independent classes of one softmax.
Per-level accuracy: with level task ids, ``R[-1, 0]`` is the final coarse accuracy
(whole test set, coarse labels) and ``mean(R[-1, 1:])`` the final fine accuracy (each
fine experience's test digits scored over all seen fine classes).

Claim: final fine-level accuracy of HLE >= ER + 5 points and coarse-level accuracy
>= ER - 1 point (mean over seeds; ``quick``: seed 0, ``full``: seeds 0-2).
:func:`run_comparison` also runs CLINC150 (frozen MiniLM features, domains -> intents)
for the benchmark (``benchmarks/hle.py``); that run is reported, not part of the claim.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper

BUFFER = 200
DIGIT_PAIRS = (0, 0, 1, 1, 2, 2, 3, 3, 4, 4)


def run_comparison(data, seeds, *, coarse_labels=None, coarse_fraction: float = 0.4, batch_size: int = 10,
                   buffer_size: int = BUFFER, lr: float = 1e-3) -> dict:
    """Final coarse / fine accuracy of ER and HLE on hierarchical streams (one per seed).

    Returns ``{method: {"coarse": [...], "fine": [...], "seconds": [...]}}``.
    """
    from lifelong.evaluation import run
    from lifelong.methods.config import build_config
    from lifelong.methods.er import ER
    from lifelong.methods.hle import HLE
    from lifelong.scenarios.hierarchical import class_parents, hierarchical

    common = {"optimizer": "adam", "lr": lr, "buffer_size": buffer_size}
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
    """Run ER vs HLE on the digits hierarchy (``quick``: seed 0; ``full``: seeds 0-2)."""
    from lifelong.data import load_digits

    seeds = [0, 1, 2] if scale == "full" else [0]
    with torch.random.fork_rng(devices=[]):
        out = run_comparison(load_digits(), seeds, coarse_labels=DIGIT_PAIRS)
    mean = {(m, lv): float(np.mean(out[m][lv])) for m in out for lv in ("coarse", "fine")}
    fine_gain = mean[("hle", "fine")] - mean[("er", "fine")]
    coarse_gap = mean[("hle", "coarse")] - mean[("er", "coarse")]
    measured = {f"{lv}_acc/{m}": round(v, 4) for (m, lv), v in mean.items()}
    measured.update({f"{lv}_acc_per_seed/{m}": ", ".join(f"{a:.3f}" for a in out[m][lv])
                     for m in out for lv in ("coarse", "fine")})
    measured["fine_gain"] = round(fine_gain, 4)
    measured["coarse_gap"] = round(coarse_gap, 4)
    return Claim(
        paper=PAPER.short_name,
        statement=("on an online hierarchical label expansion stream, HLE's hierarchy-aware pseudo-labelling and "
                   "memory management beat ER at the fine level without losing coarse accuracy"),
        criterion="mean final fine accuracy >= ER + 5 points and mean final coarse accuracy >= ER - 1 point",
        measured=measured,
        held=bool(fine_gain >= 0.05 and coarse_gap >= -0.01),
        scale=scale,
        notes=(f"digits, coarse = digit pairs, 40% coarse-labelled first, fine revealed per coarse class; online "
               f"batch 10, one pass; memory {BUFFER}; MLP 256-256, Adam 1e-3; seeds {seeds}"),
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
