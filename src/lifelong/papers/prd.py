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


def methods_from(settings: dict, tuned: dict | None = None) -> dict[str, tuple[type, dict]]:
    """{row: (learner class, config)} of the spec's ``methods``, each config with the spec's ``epochs``.

    ``tuned`` (``{row: {key: value}}``, from :func:`tune`) adds each row's tuned settings.
    """
    from lifelong.methods import get_method

    tuned = tuned or {}
    return {
        row: (get_method(m["method"]), {**m["config"], "epochs": settings["epochs"], **tuned.get(row, {})})
        for row, m in settings["methods"].items()
    }


def knob_grid(settings: dict, row: str) -> list[dict]:
    """The settings tried for ``row``: every lr of ``lr_grid``, and for PRD with distillation every
    ``distill_grid`` weight too (its own key knob)."""
    lrs = [float(v) for v in settings["lr_grid"]]
    m = settings["methods"][row]
    if m["method"] == "prd" and m["config"].get("distill_coef", 1.0) != 0.0:
        return [{"lr": lr, "distill_coef": float(d)} for d in settings["distill_grid"] for lr in lrs]
    return [{"lr": lr} for lr in lrs]


def validation_data(data, settings: dict):
    """The training split cut into train / validation (``val_fraction``, seed ``tune_seed``): see
    :func:`lifelong.papers.common.validation_split`."""
    from lifelong.papers.common import validation_split

    return validation_split(data, settings["val_fraction"], settings["tune_seed"])


def tune(data, settings: dict) -> dict:
    """Each row's settings from :func:`knob_grid`: the best final average accuracy on the validation stream.

    Every row is tuned with :func:`lifelong.papers.common.pick_on_validation` on the same validation stream
    (held out of the training images, class order of ``tune_seed``). Returns
    ``{row: {"best": {key: value}, "scores": {label: validation accuracy}}}``.
    """
    from lifelong.evaluation import run
    from lifelong.methods.config import build_config
    from lifelong.papers.common import log_row, pick_on_validation
    from lifelong.scenarios import class_incremental

    val = class_incremental(validation_data(data, settings), tasks=settings["tasks"], seed=settings["tune_seed"])
    out = {}
    for row, (cls, cfg) in methods_from(settings).items():
        grid = knob_grid(settings, row)
        labels = [", ".join(f"{k}={v:g}" for k, v in g.items()) for g in grid]
        by_label = dict(zip(labels, grid))

        def score(label, _cls=cls, _cfg=cfg, _by_label=by_label):
            config = build_config(_cls.config_class, {**_cfg, **_by_label[label]})
            learner = _cls(config, seed=settings["tune_seed"])
            result = run(val, learner, seed=settings["tune_seed"], progress=False)
            return float(result.accuracy_matrix[-1].mean())

        if len(grid) == 1:
            best, scores = labels[0], {}
        else:
            best, scores = pick_on_validation(labels, score)
        log_row("prd", kind="tune", arm=row, best=best, scores=scores)
        out[row] = {"best": grid[labels.index(best)], "scores": scores}
    return out


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
    """PRD vs its no-distillation variant and CE fine-tuning with ``settings``, paired per seed."""
    from lifelong.papers.common import load_data, paired, paired_measured

    seeds, epochs = settings["seeds"], settings["epochs"]
    data = load_data(settings["data"])
    with torch.random.fork_rng(devices=[]):
        tuned = tune(data, settings)
        out = run_comparison(
            data, seeds, methods_from(settings, {k: v["best"] for k, v in tuned.items()}), tasks=settings["tasks"]
        )
    runs = out["accuracy"]
    acc = {k: float(np.mean(v)) for k, v in runs.items()}
    g_nd, g_ft = settings["min_gain_over_no_distill"], settings["min_gain_over_finetune"]
    vs_nodistill = paired(runs["prd"], runs["prd_no_distill"], g_nd)
    vs_finetune = paired(runs["prd"], runs["finetune"], g_ft)
    stored = max(out["state_growth"])
    held = vs_nodistill["held"] and vs_finetune["held"] and stored == 0
    measured = {f"final_acc/{k}": round(v, 4) for k, v in acc.items()}
    measured.update({f"final_acc_std/{k}": round(float(np.std(v)), 4) for k, v in runs.items()})
    measured.update({f"per_seed/{k}": ", ".join(f"{a:.3f}" for a in v) for k, v in runs.items()})
    measured.update({f"tuned/{k}": ", ".join(f"{a}={b:g}" for a, b in v["best"].items()) for k, v in tuned.items()})
    measured.update(paired_measured("prd_minus_no_distill", vs_nodistill))
    measured.update(paired_measured("prd_minus_finetune", vs_finetune))
    measured["parts held (vs no-distill, vs fine-tune, no storage)"] = (
        f"{vs_nodistill['held']}, {vs_finetune['held']}, {stored == 0}"
    )
    measured["prd_state_growth_entries"] = stored
    grid = ", ".join(f"{v:g}" for v in settings["lr_grid"])
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "jointly learning a SupCon representation and class prototypes, with relation distillation "
            "keeping old prototypes' similarities to new data, gives strong class-incremental accuracy "
            "without storing any examples"
        ),
        criterion=(
            f"class-incremental final average accuracy, paired per seed ({len(seeds)} seed(s)): PRD - "
            f"no-distillation variant has mean >= {g_nd * 100:g} points and PRD - CE fine-tuning mean >= "
            f"{g_ft * 100:g} points, each with its 95 % interval above 0; PRD's state does not grow with the "
            f"data (0 stored examples); every arm's lr from {{{grid}}} (PRD's distillation weight too) "
            "picked on a validation split"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            f"{data.name}; class-incremental {settings['tasks']} x 2 classes, {epochs} epochs per experience, no "
            "task id at test; MLP 256-256, SGD momentum 0.9, batch 32 for every arm; lr (and PRD's distill_coef) "
            f"tuned on {settings['val_fraction']:g} of the training images (seed {settings['tune_seed']}); "
            f"seeds {seeds}"
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
