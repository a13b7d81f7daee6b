"""Paper 56: *SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model*
(Zhang, Wang, Kang, Chen, Wei; ICCV 2023, arXiv:2303.05118). Implemented by :mod:`lifelong.methods.slca`
(with :class:`lifelong.heads.prototype.ClassGaussians`).

Claims, as ablation rows of Seq FT of the pre-trained encoder: a slow learner greatly improves sequential
fine-tuning and classifier alignment improves it further. Checked on CLINC150 with all-MiniLM-L6-v2 over
token ids; protocol in ``specs/slca.toml``.
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def reproduce(scale: str = "quick") -> Claim:
    """Check the SLCA ablation rows at ``scale`` (settings from ``specs/slca.toml``)."""
    return check(load_spec("slca", scale), scale)


def slca_matrices(config: dict, stream, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy matrices of one ``slca`` run: with the stage-1 heads (SL) and with the aligned heads (SL+CA)."""
    from lifelong.methods import make_learner

    learner = make_learner("slca", config, seed=seed)
    T = len(stream)
    R_sl, R_ca = np.full((T, T), np.nan), np.full((T, T), np.nan)
    tests = [e.test_tensors() for e in stream]
    for t, experience in enumerate(stream):
        learner.learn(experience)
        for j in range(t + 1):
            x, y = tests[j]
            R_sl[t, j] = float((learner.logits(x, aligned=False).argmax(1) == y).float().mean())
            R_ca[t, j] = float((learner.logits(x, aligned=True).argmax(1) == y).float().mean())
    return R_sl, R_ca


def tune(settings: dict, arm: str) -> tuple[float, dict]:
    """The lr of ``arm`` (``slca``: the head's, the encoder's is 1/100 of it; ``seqft``: both) from its grid.

    Picked by final average accuracy on CLINC150's validation split (seed ``tune_seed``): the
    slow learner by its stage-1 heads (SL), SeqFT by its own; the test split is not read.
    """
    from lifelong.papers.common import clinc_pair, final_accuracy, log_row

    grid = settings[f"{arm}_lr_grid"]
    if len(grid) == 1:
        return float(grid[0]), {}
    seed = settings["tune_seed"]
    _, tokens = clinc_pair({**settings["data"], "eval_split": "val"}, settings["order"], seed)
    scores = {}
    for lr in grid:
        config = {**settings["common_config"], **settings[arm], "lr": lr}
        if arm == "slca":
            scores[lr] = float(slca_matrices(config, tokens, seed)[0][-1].mean())
        else:
            scores[lr] = final_accuracy("slca", config, tokens, seed=seed)[0]
        log_row("slca", tuning=arm, lr=lr, val_accuracy=scores[lr])
    return float(max(grid, key=lambda v: scores[v])), {str(k): v for k, v in scores.items()}


def check(settings: dict, scale: str) -> Claim:
    """Check SL >= SeqFT + margin and SL+CA >= SL + margin, paired per seed, on the CLINC150 token stream."""
    from lifelong.evaluation.bounds import joint_logistic_regression
    from lifelong.papers.common import clinc_pair, final_accuracy, log_row, paired

    seeds = list(settings["seeds"])
    common = dict(settings["common_config"])
    rows: dict[str, list[float]] = {"seqft": [], "sl": [], "slca": [], "simplecil": []}
    just: dict[str, list[float]] = {"seqft": [], "sl": []}
    lr, tuning = {}, {}
    for arm in ("slca", "seqft"):
        lr[arm], tuning[arm] = tune(settings, arm)
    joint = None
    for seed in seeds:
        features, tokens = clinc_pair(settings["data"], settings["order"], seed)
        seqft_config = {**common, **settings["seqft"], "lr": lr["seqft"]}
        rows["seqft"].append(final_accuracy("slca", seqft_config, tokens, seed=seed)[0])
        R_sl, R_ca = slca_matrices({**common, **settings["slca"], "lr": lr["slca"]}, tokens, seed)
        rows["sl"].append(float(R_sl[-1].mean()))
        rows["slca"].append(float(R_ca[-1].mean()))
        just["sl"].append(float(np.diag(R_sl).mean()))
        rows["simplecil"].append(final_accuracy("simplecil", {}, features, seed=seed)[0])
        if settings["context"]:
            frozen_config = {**common, **settings["frozen"], "lr": lr["slca"]}
            rows.setdefault("frozen_encoder", []).append(final_accuracy("slca", frozen_config, tokens, seed=seed)[0])
        log_row("slca", seed=seed, **{k: v[-1] for k, v in rows.items()}, sl_just_learned=just["sl"][-1])
        if joint is None:
            joint = joint_logistic_regression(features, **settings["joint"])
    sl_gain, ca_gain = settings["min_sl_gain"], settings["min_ca_gain"]
    sl_vs_seqft = paired(rows["sl"], rows["seqft"], sl_gain)
    ca_vs_sl = paired(rows["slca"], rows["sl"], ca_gain)
    measured = {
        "experiences": len(tokens),
        "classes": tokens.num_classes,
        "seeds": seeds,
        "lr": lr,
        "val_accuracy_by_lr": tuning,
        **rows,
        "sl_just_learned": just["sl"],
        "joint_logistic_regression": joint,
        "sl_minus_seqft": sl_vs_seqft,
        "slca_minus_sl": ca_vs_sl,
        "slca_minus_simplecil": paired(rows["slca"], rows["simplecil"]),
        **({"sl_minus_frozen_encoder": paired(rows["sl"], rows["frozen_encoder"])} if "frozen_encoder" in rows else {}),
    }
    held = sl_vs_seqft["held"] and ca_vs_sl["held"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "a slow learner (pre-trained encoder lr = 1/100 of the head's) greatly improves sequential "
            "fine-tuning of a pre-trained model, and classifier alignment on class-Gaussian pseudo-features "
            "improves it further"
        ),
        criterion=(
            f"final average accuracy, paired over seeds {seeds}: SL >= SeqFT + {sl_gain * 100:g} points and "
            f"SL+CA >= SL + {ca_gain * 100:g} points (mean >= margin; with 2+ seeds the 95 % interval's "
            "lower end > 0)"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            f"CLINC150 token ids through all-MiniLM-L6-v2, {settings['order']} stream (one domain per "
            f"experience), {common.get('epochs')} epochs per experience, encoder layers learning: "
            f"{'all' if common.get('train_layers', -1) < 0 else 'top ' + str(common['train_layers'])} of 6, "
            "in both arms; alignment at lr 0.01. SimpleCIL (frozen features), the head alone on the frozen encoder "
            "(full scale) and the joint bound are context."
        ),
    )


PAPER = Paper(
    number=56,
    short_name="slca",
    title="SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.slca", "lifelong.encoders.text_backbone", "lifelong.heads.prototype"),
    arxiv="2303.05118",
    reproduce=reproduce,
)
