"""Paper 43: *Revisiting Class-Incremental Learning with Pre-Trained Models: Generalizability and
Adaptivity are All You Need* (Zhou, Cai, Ye, Zhan, Liu; IJCV 2024, arXiv:2303.07338). Implemented by
:mod:`lifelong.methods.simplecil` (SimpleCIL) and :mod:`lifelong.methods.aper` (ADAM / APER).

Claims: prototypes of a frozen pre-trained embedding (SimpleCIL) beat sequential fine-tuning without
training, and adapting then merging embeddings (APER) improves on SimpleCIL. Checked on CLINC150
with frozen MiniLM features, one domain per experience; protocol in ``specs/simplecil.toml``.
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec

# names that moved out of this module, kept importable for older callers
_MOVED = {
    "clinc_available": "lifelong.papers.common",
    "clinc_data_root": "lifelong.papers.common",
    "final_accuracy": "lifelong.papers.common",
    "gap_closed": "lifelong.papers.common",
    "joint_logistic_regression": "lifelong.evaluation.bounds",
}


def __getattr__(name: str):
    import importlib

    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    if name == "SEQFT_LINEAR":  # now the spec's seqft_linear config
        return dict(load_spec("simplecil", "quick")["methods"]["seqft_linear"]["config"])
    if name == "clinc_stream":  # clinc_stream(scale): the stream of this reproduction at ``scale``
        from lifelong.papers.common import clinc_stream

        return lambda scale: clinc_stream(load_spec("simplecil", scale)["data"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def reproduce(scale: str = "quick") -> Claim:
    """Check SimpleCIL >> SeqFT and APER >= SimpleCIL at ``scale`` (settings from ``specs/simplecil.toml``)."""
    return check(load_spec("simplecil", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Check SimpleCIL >= SeqFT + margin and APER >= SimpleCIL on the CLINC150 stream.

    The APER - SimpleCIL difference is reported next to the paper's +2 (claimed under a domain
    gap), as are the SSF and fine-tuning variants and the merge ablation.
    """
    from lifelong.evaluation.bounds import joint_logistic_regression
    from lifelong.papers.common import clinc_stream, final_accuracy, gap_closed

    stream = clinc_stream(settings["data"])
    acc, R = {}, {}
    for row, m in settings["methods"].items():
        acc[row], R[row] = final_accuracy(m["method"], m["config"], stream, seed=settings["learner_seed"])
    joint = joint_logistic_regression(stream, **settings["joint"])
    simple, seqft, aper = acc["simplecil"], acc["seqft_linear"], acc["aper_adapter"]
    margin, paper_gain = settings["min_gain_over_seqft"], settings["paper_aper_gain"]
    measured = {
        "experiences": len(stream),
        "classes": stream.num_classes,
        "simplecil": simple,
        "seqft_linear": seqft,
        "seqft_linear_just_learned": float(np.diag(R["seqft_linear"]).mean()),
        **{row: a for row, a in acc.items() if row.startswith("aper_")},
        "joint_logistic_regression": joint,
        "simplecil_minus_seqft": simple - seqft,
        "aper_minus_simplecil": aper - simple,
        "aper_gap_to_joint_closed": gap_closed(aper, simple, joint),
        f"aper_plus_{paper_gain * 100:g}_points_met": bool(aper >= simple + paper_gain),
    }
    held = simple >= seqft + margin and aper >= simple
    criterion = (
        f"final average accuracy: SimpleCIL >= SeqFT (linear head) + {margin * 100:g} points, and APER "
        "(adapter) >= SimpleCIL"
    )
    if settings["check_expected"]:
        expected, tol = settings["expected_simplecil"], settings["expected_tolerance"]
        measured["expected_simplecil"] = expected
        held = held and abs(simple - expected) <= tol
        criterion += f"; SimpleCIL within {tol * 100:g} point of {expected:.1%}"
    notes = (
        "CLINC150 + frozen all-MiniLM-L6-v2 features, one domain per experience, learner seed "
        f"{settings['learner_seed']}. APER adapts a module on top of the cached embedding (not inside the "
        "transformer). The paper's +2 points is claimed under a domain gap; MiniLM was trained on broad "
        "sentence data, so the gap here is small."
    )
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "prototypes of a frozen pre-trained embedding (SimpleCIL) beat sequential fine-tuning without "
            "training, and adapting on the first experience then merging frozen and adapted embeddings "
            "(ADAM/APER) improves on SimpleCIL"
        ),
        criterion=criterion,
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=notes,
    )


PAPER = Paper(
    number=43,
    short_name="simplecil",
    title=(
        "Revisiting Class-Incremental Learning with Pre-Trained Models: Generalizability and Adaptivity are "
        "All You Need"
    ),
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.simplecil", "lifelong.methods.aper", "lifelong.heads.prototype"),
    arxiv="2303.07338",
    reproduce=reproduce,
)
