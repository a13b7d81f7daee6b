"""Seed paper 7: *A Bag of Tricks for Few-Shot Class-Incremental Learning* (Roy et al., arXiv 2403.14392).

Claim (catalogue): with all the tricks, last-session accuracy over all classes is
>= the baseline's + 3 points, and base-class accuracy drops less from the base
session to the last one than the baseline's. Baseline: the prototype classifier
(cosine to class-mean embeddings) on the frozen pre-trained features.

``quick``: scikit-learn digits (64 raw pixels standing in for frozen features);
base session = 5 classes with all their data, then 5 sessions of 1 class x 5 shots,
class order of seed 0 (seconds). ``full``: CLINC150 as frozen all-MiniLM-L6-v2
features in the domain order of ``domains.json``; base session = the first 4
domains (60 intents, full data), then 9 sessions of 10 intents x 5 shots; the shots
are drawn with seeds 0, 1, 2. The ablation ladder (head only, + SupCon, + ETF,
+ pseudo-classes, + SubNet tuning) is measured too. Run ``lifelong reproduce fscil-tricks``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lifelong.papers.base import Claim, Paper

MARGIN = 0.03
OFF = {"project": False, "supcon": False, "etf": False, "pseudo_classes": 0, "subnet_tuning": False}
#: the ablation ladder: each rung adds one trick to the previous one
LADDER = {
    "baseline": OFF,
    "head": {**OFF, "project": True},
    "+supcon": {**OFF, "project": True, "supcon": True},
    "+etf": {**OFF, "project": True, "supcon": True, "etf": True},
    "+pseudo": {"project": True, "supcon": True, "etf": True, "pseudo_classes": -1, "subnet_tuning": False},
    "all": {},
}


def _clinc_root() -> str | None:
    """``LIFELONG_DATA`` (left to the loader), else the workspace's ``../shared/data`` if it has CLINC150."""
    if os.environ.get("LIFELONG_DATA"):
        return None
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return str(shared) if (shared / "clinc150" / "data_full.json").exists() else None


def fscil_stream(scale: str, seed: int):
    """The FSCIL stream of the reproduction (see the module docstring)."""
    from lifelong.data import load_dataset, load_digits
    from lifelong.scenarios.fewshot import few_shot_incremental

    if scale == "quick":
        return few_shot_incremental(load_digits(), base_classes=5, ways=1, shots=5, sessions=5, seed=seed)
    data = load_dataset("clinc150", data_root=_clinc_root(), progress=False)
    return few_shot_incremental(data, base_classes=60, ways=10, shots=5, sessions=9, seed=seed,
                                class_order=list(range(data.num_classes)))


def run_variant(config: dict, stream, seed: int = 0) -> dict:
    """Last-session accuracy on all classes, base-class accuracy after the base and the last session."""
    from lifelong.evaluation import run
    from lifelong.methods import make_learner
    from lifelong.scenarios.fewshot import session_accuracies

    result = run(stream, make_learner("fscil-tricks", config, seed=seed), seed=seed, progress=False)
    R = result.accuracy_matrix
    sessions = session_accuracies(R, stream.describe()["test_sizes"])
    return {"last": sessions[-1], "first": sessions[0], "base_first": float(R[0, 0]), "base_last": float(R[-1, 0]),
            "novel_last": float(np.mean(R[-1, 1:])) if R.shape[1] > 1 else float("nan"),
            "average_session": float(np.mean(sessions))}


def reproduce(scale: str = "quick") -> Claim:
    """All tricks vs the frozen-feature prototype baseline on an FSCIL stream (see the module docstring)."""
    seeds = (0,) if scale == "quick" else (0, 1, 2)
    ladder = LADDER if scale == "full" else {k: LADDER[k] for k in ("baseline", "all")}
    per = {k: [] for k in ladder}
    for seed in seeds:
        stream = fscil_stream(scale, seed)
        for name, cfg in ladder.items():
            per[name].append(run_variant(cfg, stream, seed))
    mean = {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in per.items()}
    measured: dict = {"seeds": len(seeds)}
    for name, m in mean.items():
        measured[f"{name}/last_session_accuracy"] = round(m["last"], 4)
        measured[f"{name}/base_drop"] = round(m["base_first"] - m["base_last"], 4)
        measured[f"{name}/novel_last"] = round(m["novel_last"], 4)
        measured[f"{name}/average_session_accuracy"] = round(m["average_session"], 4)
    gain = mean["all"]["last"] - mean["baseline"]["last"]
    drop_all = mean["all"]["base_first"] - mean["all"]["base_last"]
    drop_base = mean["baseline"]["base_first"] - mean["baseline"]["base_last"]
    measured["all_minus_baseline_last_session"] = round(gain, 4)
    held = gain >= MARGIN and drop_all <= drop_base
    what = ("digits: 5 base classes + 5 sessions x 1-way 5-shot" if scale == "quick"
            else "CLINC150 MiniLM features: 60 base intents (4 domains) + 9 sessions x 10-way 5-shot")
    return Claim(
        paper=PAPER.short_name,
        statement=("the bag of tricks (base-trained then frozen head with SupCon, pre-assigned ETF prototypes, "
                   "pseudo-classes, and SubNet tuning in incremental sessions) beats the incremental-frozen "
                   "prototype baseline in the last session and keeps base classes better"),
        criterion=(f"on {what} ({len(seeds)} seed(s)): all tricks' last-session accuracy over all classes >= "
                   f"baseline + {MARGIN * 100:.0f} points, and all tricks' base-class drop (base session -> last "
                   "session) <= the baseline's"),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=("baseline = cosine prototypes on the frozen features; tricks act on a residual MLP head over them. "
               "Implemented: SupCon, ETF pre-assignment, pseudo-classes (feature mixtures of base-class pairs), "
               "SubNet tuning (top-5% |grad| weights, 10 SGD steps). Skipped: self-supervised pre-training (the "
               "frozen encoder already is one, in every variant) and the rotation pretext task (no text analogue)"),
    )


PAPER = Paper(
    number=7,
    short_name="fscil-tricks",
    title="A Bag of Tricks for Few-Shot Class-Incremental Learning",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.fscil_tricks", "lifelong.scenarios.fewshot"),
    arxiv="2403.14392",
    reproduce=reproduce,
)
