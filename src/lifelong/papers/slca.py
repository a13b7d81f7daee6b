"""Seed paper 56: *SLCA: Slow Learner with Classifier Alignment for Continual Learning on a
Pre-trained Model* (Zhang, Wang, Kang, Chen, Wei; ICCV 2023, arXiv:2303.05118).
Implemented by :mod:`lifelong.methods.slca` (with :class:`lifelong.heads.prototype.ClassGaussians`).

The paper's claims, as ablation rows of its Seq FT baseline: a slow learner (the
representation trained at 1/100 of the classifier's learning rate) greatly improves
sequential fine-tuning, classifier alignment on Gaussian pseudo-features of every
seen class improves it further, and the result beats methods that keep the
pre-trained model frozen.

:func:`reproduce` runs the three rows on the CLINC150 stream of the paper-43
reproduction (:mod:`lifelong.papers.simplecil`: frozen all-MiniLM-L6-v2 features,
one domain per experience; ``quick`` 4 domains x <= 20 examples per intent, ``full``
10 x 15 intents), learner seed 0:

- **SeqFT**: ``slca`` with ``backbone_lr_scale=1`` (representation and head at the
  same lr 0.01) and no alignment;
- **SL**: ``slca`` with ``ca=False`` (representation lr 1e-4);
- **SL+CA = SLCA**: ``slca`` with its defaults;

and compares SLCA with SimpleCIL and with the joint logistic-regression upper bound.
For context it also reports SeqFT with a 10x faster representation
(``backbone_lr_scale=10``) and SeqFT of a single shared linear head (``finetune``).
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper
from lifelong.papers.simplecil import (SEQFT_LINEAR, clinc_stream, final_accuracy, gap_closed,
                                       joint_logistic_regression)

SEQFT = {"backbone_lr_scale": 1.0, "ca": False}
SL = {"ca": False}
SLCA_DEFAULT: dict = {}
SEQFT_FAST = {"backbone_lr_scale": 10.0, "ca": False}


def reproduce(scale: str = "quick") -> Claim:
    """Check SL >= SeqFT + 10, SL+CA >= SL + 3 and SLCA >= SimpleCIL on the CLINC150 stream.

    Final average accuracy (mean of the last row of the accuracy matrix). Also reports
    how much of the gap from SimpleCIL to the joint logistic-regression bound SLCA closes.
    """
    stream = clinc_stream(scale)
    seqft, R_seqft = final_accuracy("slca", SEQFT, stream)
    sl, R_sl = final_accuracy("slca", SL, stream)
    slca, R_slca = final_accuracy("slca", SLCA_DEFAULT, stream)
    simple, _ = final_accuracy("simplecil", {}, stream)
    joint = joint_logistic_regression(stream)
    measured = {
        "experiences": len(stream), "classes": stream.num_classes,
        "seqft": seqft, "sl": sl, "slca": slca, "simplecil": simple, "joint_logistic_regression": joint,
        "sl_minus_seqft": sl - seqft, "slca_minus_sl": slca - sl, "slca_minus_simplecil": slca - simple,
        "slca_gap_to_joint_closed": gap_closed(slca, simple, joint),
        "seqft_just_learned": float(np.diag(R_seqft).mean()), "sl_just_learned": float(np.diag(R_sl).mean()),
        "slca_just_learned": float(np.diag(R_slca).mean()),
    }
    if scale == "full":
        fast, _ = final_accuracy("slca", SEQFT_FAST, stream)
        shared, _ = final_accuracy("finetune", SEQFT_LINEAR, stream)
        measured.update(seqft_fast_representation=fast, sl_minus_seqft_fast=sl - fast,
                        seqft_shared_linear_head=shared)
    held = sl >= seqft + 0.10 and slca >= sl + 0.03 and slca >= simple
    return Claim(
        paper=PAPER.short_name,
        statement=("a slow learner (representation lr = 1/100 of the head's) greatly improves sequential fine-tuning "
                   "of a pre-trained model, classifier alignment on class-Gaussian pseudo-features improves it "
                   "further, and SLCA beats the frozen-model prototype baseline"),
        criterion=("final average accuracy: SL >= SeqFT + 10 points, SL+CA >= SL + 3 points, and SLCA >= "
                   "SimpleCIL"),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=("CLINC150 + frozen all-MiniLM-L6-v2 features, one domain per experience, learner seed 0. The "
               "trainable representation is one identity-initialised linear layer over the cached embedding, "
               "not the whole transformer the paper fine-tunes, so Seq FT has far less room to overfit "
               "(see seqft_fast_representation at full scale)."),
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
