"""Paper 11: *Prototype-Sample Relation Distillation: Towards Replay-Free Continual Learning* (PRD; Asadi et
al., ICML 2023). Implemented by :mod:`lifelong.methods.prd` with the losses in :mod:`lifelong.heads.losses`.

Claim (scaled down): on a class-incremental stream PRD beats its no-distillation variant and CE
fine-tuning by clear margins while storing no examples. Protocol in ``specs/prd.toml`` (digits at
quick scale, the MNIST subset at full). Run ``lifelong reproduce prd``.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def methods_from(settings: dict) -> dict[str, tuple[type, dict]]:
    """{row: (learner class, config)} of the spec's ``methods``, each config with the spec's ``epochs``."""
    from lifelong.methods import get_method

    return {
        row: (get_method(m["method"]), {**m["config"], "epochs": settings["epochs"]})
        for row, m in settings["methods"].items()
    }


def state_numel(learner) -> int:
    """Total number of tensor entries in the learner's checkpoint state (nested dicts/lists)."""

    def count(v) -> int:
        if isinstance(v, torch.Tensor):
            return v.numel()
        if isinstance(v, dict):
            return sum(count(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return sum(count(x) for x in v)
        return 0

    return count(learner.state_dict())


def run_comparison(data, seeds, methods: dict[str, tuple[type, dict]], tasks: int = 5) -> dict:
    """Final average accuracy per method and seed, and PRD's state growth after the second experience.

    Returns ``{"accuracy": {method: [...]}, "seconds": {method: [...]}, "state_growth": [...]}``
    where ``state_growth`` is PRD's checkpoint size (tensor entries) after the last
    experience minus after the second one: 0 means nothing grows with the data.
    """
    from lifelong.evaluation import run
    from lifelong.methods.config import build_config
    from lifelong.scenarios import class_incremental

    acc = {m: [] for m in methods}
    secs = {m: [] for m in methods}
    growth = []
    for seed in seeds:
        stream = class_incremental(data, tasks=tasks, seed=seed)
        for name, (cls, cfg) in methods.items():
            learner = cls(build_config(cls.config_class, cfg), seed=seed)
            sizes = []
            original = learner.after_experience

            def record(experience, _orig=original, _sizes=sizes, _l=learner):
                _orig(experience)
                _sizes.append(state_numel(_l))

            learner.after_experience = record
            result = run(stream, learner, seed=seed, progress=False)
            acc[name].append(float(result.accuracy_matrix[-1].mean()))
            secs[name].append(float(sum(result.learn_seconds)))
            if name == "prd":
                growth.append(sizes[-1] - sizes[1])
    return {"accuracy": acc, "seconds": secs, "state_growth": growth}


def reproduce(scale: str = "quick") -> Claim:
    """Run the PRD comparison at ``scale`` (settings from ``specs/prd.toml``)."""
    return check(load_spec("prd", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """PRD vs its no-distillation variant and CE fine-tuning with ``settings``."""
    from lifelong.papers.common import load_data

    seeds, epochs = settings["seeds"], settings["epochs"]
    data = load_data(settings["data"])
    with torch.random.fork_rng(devices=[]):
        out = run_comparison(data, seeds, methods_from(settings), tasks=settings["tasks"])
    acc = {k: float(np.mean(v)) for k, v in out["accuracy"].items()}
    vs_nodistill = acc["prd"] - acc["prd_no_distill"]
    vs_finetune = acc["prd"] - acc["finetune"]
    stored = max(out["state_growth"])
    g_nd, g_ft = settings["min_gain_over_no_distill"], settings["min_gain_over_finetune"]
    held = vs_nodistill >= g_nd and vs_finetune >= g_ft and stored == 0
    measured = {f"final_acc/{k}": round(v, 4) for k, v in acc.items()}
    measured.update({f"final_acc_std/{k}": round(float(np.std(v)), 4) for k, v in out["accuracy"].items()})
    measured["prd_minus_no_distill"] = round(vs_nodistill, 4)
    measured["prd_minus_finetune"] = round(vs_finetune, 4)
    measured["prd_state_growth_entries"] = stored
    prd = settings["methods"]["prd"]["config"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "jointly learning a SupCon representation and class prototypes, with relation distillation "
            "keeping old prototypes' similarities to new data, gives strong class-incremental accuracy "
            "without storing any examples"
        ),
        criterion=(
            f"PRD class-incremental final average accuracy >= no-distillation variant + {g_nd * 100:g} points "
            f"and >= CE fine-tuning + {g_ft * 100:g} points (means over seeds); PRD's state does not grow "
            "with the data (0 stored examples)"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            f"{data.name}; class-incremental {settings['tasks']} x 2 classes, {epochs} epochs per experience, no "
            f"task id at test; MLP 256-256; PRD SGD lr {prd.get('lr')} batch {prd.get('batch_size')} (tuned on "
            f"seeds 100-101), fine-tuning SGD lr 0.01; seeds {seeds}"
        ),
    )


PAPER = Paper(
    number=11,
    short_name="prd",
    title="Prototype-Sample Relation Distillation: Towards Replay-Free Continual Learning",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.prd", "lifelong.heads.losses"),
    arxiv="2303.14771",
    reproduce=reproduce,
)
