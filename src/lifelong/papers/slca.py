"""Paper 56: *SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model*
(Zhang, Wang, Kang, Chen, Wei; ICCV 2023, arXiv:2303.05118). Implemented by :mod:`lifelong.methods.slca`
(with :class:`lifelong.heads.prototype.ClassGaussians`).

Claims, as ablation rows of Seq FT: a slow learner greatly improves sequential fine-tuning, classifier
alignment improves it further, and SLCA beats the frozen-model prototype baseline. Checked on the
CLINC150 stream of the simplecil reproduction; protocol in ``specs/slca.toml``.
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def reproduce(scale: str = "quick") -> Claim:
    """Check the SLCA ablation rows at ``scale`` (settings from ``specs/slca.toml``)."""
    return check(load_spec("slca", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Check SL >= SeqFT + margin, SL+CA >= SL + margin and SLCA >= SimpleCIL on the CLINC150 stream.

    Final average accuracy (mean of the last row of the accuracy matrix). Also reports
    how much of the gap from SimpleCIL to the joint logistic-regression bound SLCA closes.
    """
    from lifelong.evaluation.bounds import joint_logistic_regression
    from lifelong.papers.common import clinc_stream, final_accuracy, gap_closed

    stream = clinc_stream(settings["data"])
    seed = settings["learner_seed"]
    acc, R = {}, {}
    for row, m in settings["methods"].items():
        acc[row], R[row] = final_accuracy(m["method"], m["config"], stream, seed=seed)
    seqft, sl, slca, simple = acc["seqft"], acc["sl"], acc["slca"], acc["simplecil"]
    joint = joint_logistic_regression(stream, **settings["joint"])
    measured = {
        "experiences": len(stream),
        "classes": stream.num_classes,
        "seqft": seqft,
        "sl": sl,
        "slca": slca,
        "simplecil": simple,
        "joint_logistic_regression": joint,
        "sl_minus_seqft": sl - seqft,
        "slca_minus_sl": slca - sl,
        "slca_minus_simplecil": slca - simple,
        "slca_gap_to_joint_closed": gap_closed(slca, simple, joint),
        "seqft_just_learned": float(np.diag(R["seqft"]).mean()),
        "sl_just_learned": float(np.diag(R["sl"]).mean()),
        "slca_just_learned": float(np.diag(R["slca"]).mean()),
    }
    if settings["context"]:
        for row, m in settings["context_methods"].items():
            measured[row], _ = final_accuracy(m["method"], m["config"], stream, seed=seed)
        if "seqft_fast_representation" in measured:
            measured["sl_minus_seqft_fast"] = sl - measured["seqft_fast_representation"]
    sl_gain, ca_gain = settings["min_sl_gain"], settings["min_ca_gain"]
    held = sl >= seqft + sl_gain and slca >= sl + ca_gain and slca >= simple
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "a slow learner (representation lr = 1/100 of the head's) greatly improves sequential fine-tuning "
            "of a pre-trained model, classifier alignment on class-Gaussian pseudo-features improves it "
            "further, and SLCA beats the frozen-model prototype baseline"
        ),
        criterion=(
            f"final average accuracy: SL >= SeqFT + {sl_gain * 100:g} points, SL+CA >= SL + "
            f"{ca_gain * 100:g} points, and SLCA >= SimpleCIL"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            f"CLINC150 + frozen all-MiniLM-L6-v2 features, one domain per experience, learner seed {seed}. The "
            "trainable representation is one identity-initialised linear layer over the cached embedding, "
            "not the whole transformer the paper fine-tunes, so Seq FT has far less room to overfit "
            "(see seqft_fast_representation at full scale)."
        ),
    )


PAPER = Paper(
    number=56,
    short_name="slca",
    title="SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.slca", "lifelong.heads.prototype"),
    arxiv="2303.05118",
    reproduce=reproduce,
)
