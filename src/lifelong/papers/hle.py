"""Paper 8: *Online Continual Learning on Hierarchical Label Expansion* (HLE; Lee, Jung, Choi & Chun,
ICCV 2023, arXiv 2308.14374).

The setting is :func:`lifelong.scenarios.hierarchical`; the method (PL-FMS: hierarchy-aware
pseudo-labelling, pseudo-label based memory management, flexible memory sampling) is
:mod:`lifelong.methods.hle`. :func:`check` compares HLE with ER per hierarchy level on digits, ER
with the same per-level softmax head (:class:`lifelong.heads.LevelSoftmax`) as the baseline, plus
the flat-softmax ER and the two ablations (no pseudo-labels, no flexible sampling); each arm's
learning rate is chosen on a validation split (protocol in ``specs/hle.toml``).
:func:`run_comparison` also serves ``benchmarks/hle.py``.
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


# The arms of the default comparison: method, whether it gets the label tree, config overrides.
DEFAULT_ARMS = {
    "er_flat": {"method": "er", "tree": False, "config": {}},
    "er": {"method": "er", "tree": True, "config": {}},
    "hle": {"method": "hle", "tree": True, "config": {}},
}


def validation_data(data, fraction: float, seed: int):
    """``data`` with its test split replaced by a held-out ``fraction`` of its training split (stratified).

    Used to choose learning rates without looking at the test split.
    """
    from lifelong.data import Dataset

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(10_007 + int(seed))
    y = data.y_train
    train, held = [], []
    for c in range(data.num_classes):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(max(int(round(fraction * len(idx))), 1), len(idx) - 2) if len(idx) >= 3 else 0
        held.append(idx[:k])
        train.append(idx[k:])
    tr, va = torch.cat(train).sort().values, torch.cat(held).sort().values
    return Dataset(
        data.name,
        data.x_train[tr],
        y[tr],
        data.x_train[va],
        y[va],
        list(data.class_names),
        coarse_labels=data.coarse_labels,
        meta=data.meta,
    )


def _arm_result(data, arm: dict, lr: float, seed: int, common: dict) -> tuple[float, float, float]:
    """(final coarse accuracy, final fine accuracy, learn seconds) of one arm on one seed's stream."""
    from lifelong.evaluation import run
    from lifelong.methods import get_method
    from lifelong.methods.config import build_config
    from lifelong.scenarios.hierarchical import class_parents, hierarchical

    stream = hierarchical(
        data,
        common["coarse_fraction"],
        seed=seed,
        coarse_labels=common["coarse_labels"],
        batch_size=common["batch_size"],
    )
    cls = get_method(arm["method"])
    cfg = {
        "optimizer": common["optimizer"],
        "lr": lr,
        "buffer_size": common["buffer_size"],
        **({"parents": tuple(class_parents(stream))} if arm["tree"] else {}),
        **arm["config"],
    }
    result = run(stream, cls(build_config(cls.config_class, cfg), seed=seed), seed=seed, progress=False)
    last = result.accuracy_matrix[-1]
    return float(last[0]), float(np.mean(last[1:])), float(sum(result.learn_seconds))


def run_comparison(
    data,
    seeds,
    *,
    coarse_labels=None,
    coarse_fraction: float = 0.4,
    batch_size: int = 10,
    buffer_size: int = 200,
    lr: float | dict = 1e-3,
    optimizer: str = "adam",
    arms: dict | None = None,
) -> dict:
    """Final coarse / fine accuracy of each arm on hierarchical streams (one per seed).

    ``arms`` maps a name to ``{"method", "tree", "config"}`` (default :data:`DEFAULT_ARMS`);
    ``lr`` is one learning rate or ``{arm: lr}``. Returns
    ``{arm: {"coarse": [...], "fine": [...], "seconds": [...]}}``.
    """
    from lifelong.papers.common import log_row

    arms = arms or DEFAULT_ARMS
    lrs = lr if isinstance(lr, dict) else {a: lr for a in arms}
    common = {
        "coarse_labels": coarse_labels,
        "coarse_fraction": coarse_fraction,
        "batch_size": batch_size,
        "buffer_size": buffer_size,
        "optimizer": optimizer,
    }
    out = {a: {"coarse": [], "fine": [], "seconds": []} for a in arms}
    for seed in seeds:
        for name, arm in arms.items():
            coarse, fine, secs = _arm_result(data, arm, lrs[name], seed, common)
            out[name]["coarse"].append(coarse)
            out[name]["fine"].append(fine)
            out[name]["seconds"].append(secs)
            log_row("hle", arm=name, seed=seed, lr=lrs[name], coarse=coarse, fine=fine)
    return out


def tune_lrs(data, settings: dict) -> tuple[dict, dict]:
    """Each arm's learning rate from ``lr_grid``, chosen on validation streams (mean of coarse and fine accuracy).

    The validation streams hold out ``validation_fraction`` of the training split (seeds
    ``tune_seeds``); the test split is not used. An arm listed in ``knob_grid`` gets its key knob
    chosen jointly with the lr (ties go to the first knob value). Returns ``({arm: lr or (lr,
    {knob: value})}, {arm: {(lr, value): score}})``.
    """
    from lifelong.methods import get_method
    from lifelong.papers.common import pick_on_validation

    common = _common(settings)
    chosen, scores = {}, {}
    knobs = settings.get("knob_grid", {})
    for name, arm in settings["arms"].items():
        # the arm's own key knob (spec ``knob_grid``: {arm: {config key: [values]}}), tuned jointly with lr;
        # skipped when the arm's method has no such setting or its config fixes it
        fields = get_method(arm["method"]).config_class.__dataclass_fields__
        knob = {k: v for k, v in knobs.get(name, {}).items() if k in fields and k not in arm["config"]}
        if len(knob) > 1:
            raise ValueError(f"knob_grid of arm {name!r} names more than one knob: {sorted(knob)}")
        key, values = next(iter(knob.items())) if knob else (None, [None])
        grid = [(lr, v) for v in values for lr in settings["lr_grid"]]

        def score(point, arm=arm, key=key):
            lr, value = point
            run_arm = arm if key is None else {**arm, "config": {**arm["config"], key: value}}
            vals = []
            for seed in settings["tune_seeds"]:
                val = validation_data(data, settings["validation_fraction"], seed)
                coarse, fine, _ = _arm_result(val, run_arm, lr, seed, common)
                vals.append((coarse + fine) / 2)
            return float(np.mean(vals))

        (lr, value), scores[name] = pick_on_validation(grid, score)
        chosen[name] = lr if key is None else (lr, {key: value})
    return chosen, scores


def _common(settings: dict) -> dict:
    return {
        "coarse_labels": settings["coarse_labels"],
        "coarse_fraction": settings["coarse_fraction"],
        "batch_size": settings["batch_size"],
        "buffer_size": settings["learner"]["buffer_size"],
        "optimizer": settings["learner"]["optimizer"],
    }


def reproduce(scale: str = "quick") -> Claim:
    """Run the HLE comparison on the digits hierarchy at ``scale`` (settings from ``specs/hle.toml``)."""
    return check(load_spec("hle", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """HLE vs ER with the same per-level head; held when HLE gains ``min_fine_gain`` at the fine level
    (paired over seeds, 95 % interval above 0) and keeps coarse accuracy within ``min_coarse_gap`` (mean)."""
    from lifelong.papers.common import load_data, paired, paired_measured

    seeds = settings["seeds"]
    data = load_data(settings["data"])
    arms = settings["arms"]
    for need in ("er", "hle"):
        if need not in arms:
            raise ValueError(f"the hle spec needs arms 'er' and 'hle', got {sorted(arms)}")
    with torch.random.fork_rng(devices=[]):
        picked, val_scores = tune_lrs(data, settings)
        lrs, knobs = {}, {}
        for name, p in picked.items():
            lrs[name], knobs[name] = p if isinstance(p, tuple) else (p, {})
        arms = {name: {**arm, "config": {**arm["config"], **knobs[name]}} for name, arm in arms.items()}
        out = run_comparison(data, seeds, arms=arms, lr=lrs, **_common(settings))
    gain, gap = settings["min_fine_gain"], settings["min_coarse_gap"]
    p_fine = paired(out["hle"]["fine"], out["er"]["fine"], gain)
    p_coarse = paired(out["hle"]["coarse"], out["er"]["coarse"])
    held_fine = p_fine["held"]
    held_coarse = p_coarse["mean"] >= gap - 1e-12
    measured = {f"{lv}_acc/{m}": round(float(np.mean(out[m][lv])), 4) for m in out for lv in ("coarse", "fine")}
    measured.update(
        {f"{lv}_acc_per_seed/{m}": ", ".join(f"{a:.3f}" for a in out[m][lv]) for m in out for lv in ("coarse", "fine")}
    )
    measured.update({f"lr/{m}": lrs[m] for m in arms})
    measured.update({f"{k}/{m}": v for m in arms for k, v in knobs[m].items()})
    measured["fine_gain"] = round(p_fine["mean"], 4)
    measured["coarse_gap"] = round(p_coarse["mean"], 4)
    measured.update(paired_measured("fine_gain_vs_er", p_fine))
    measured.update(paired_measured("coarse_gap_vs_er", p_coarse))
    facts = []
    # reported beside the claim: the head's own effect and the ablations of HLE's components
    for name, a, b, level in (
        ("head_effect_fine", "er", "er_flat", "fine"),
        ("parent_target_effect_fine", "er", "er_no_parent", "fine"),
        ("parent_target_effect_coarse", "er", "er_no_parent", "coarse"),
        ("fine_gain_vs_er_no_parent", "hle", "er_no_parent", "fine"),
        ("coarse_gap_vs_er_no_parent", "hle", "er_no_parent", "coarse"),
        ("pseudo_label_effect_fine", "hle", "hle_no_pl", "fine"),
        ("fms_effect_fine", "hle", "hle_no_fms", "fine"),
        ("pseudo_label_effect_coarse", "hle", "hle_no_pl", "coarse"),
        ("fms_effect_coarse", "hle", "hle_no_fms", "coarse"),
    ):
        if a in out and b in out:
            p = paired(out[a][level], out[b][level])
            measured.update(paired_measured(name, p))
            facts.append(f"{name} {p['mean'] * 100:+.1f} pts [{p['lo'] * 100:+.1f}, {p['hi'] * 100:+.1f}]")
    learner = settings["learner"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "on an online hierarchical label expansion stream, HLE's hierarchy-aware pseudo-labelling, "
            "pseudo-label based memory and flexible memory sampling beat ER with the same per-level softmax "
            "head at the fine level without losing coarse accuracy"
        ),
        criterion=(
            f"final fine accuracy HLE - ER (per-level head), paired over seeds: mean >= {gain * 100:g} points and "
            f"95 % interval above 0; mean final coarse accuracy >= ER "
            f"{'-' if gap < 0 else '+'} {abs(gap) * 100:g} point(s)"
        ),
        measured=measured,
        held=bool(held_fine and held_coarse),
        scale=scale,
        notes=(
            f"digits, coarse = digit pairs, {settings['coarse_fraction']:.0%} coarse-labelled first, fine revealed "
            f"per coarse class; online batch {settings['batch_size']}, one pass; memory {learner['buffer_size']}; "
            f"MLP 256-256, {learner['optimizer'].capitalize()}, lr per arm from {settings['lr_grid']} on a "
            f"{settings['validation_fraction']:.0%} validation split of the training data (seeds "
            f"{settings['tune_seeds']}): {lrs}"
            + (f", knobs tuned with lr: { {m: k for m, k in knobs.items() if k} }" if any(knobs.values()) else "")
            + f"; seeds {seeds}. fine part {'held' if held_fine else 'NOT held'}, "
            f"coarse part {'held' if held_coarse else 'NOT held'}. "
            + ("Beside the claim (paired, 95 % interval): " + "; ".join(facts) if facts else "")
        ),
    )


PAPER = Paper(
    number=8,
    short_name="hle",
    title="Online Continual Learning on Hierarchical Label Expansion",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.hle", "lifelong.scenarios.hierarchical", "lifelong.heads.hierarchy"),
    arxiv="2308.14374",
    reproduce=reproduce,
)
