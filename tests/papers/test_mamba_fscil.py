"""Paper 50 (Mamba-FSCIL, arXiv 2407.06136): the quick reproduction's verdict machinery, and a broken
variant (the dynamic branch switched off) judged NOT HELD."""

from __future__ import annotations

import json

import numpy as np

from lifelong.papers import format_claim, reproduce
from lifelong.papers.mamba_fscil import check
from lifelong.papers.spec import load_spec

VARIANTS = ("baseline", "baseline-encoder", "mamba-fscil", "no-class-sensitive", "forward-separation")


def _verdict(claim) -> list[str]:
    """The text after ``result`` on the verdict line ("HELD" alone is also inside "NOT HELD")."""
    return [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]


def _consistent(claim, margin: float, max_drop: float) -> None:
    """The paired gain is the per-seed difference of the two arms, and the verdict follows the criterion."""
    m = claim.measured
    per = m["per_seed_last"]
    gain = np.mean(np.array(per["mamba-fscil"]) - np.array(per["baseline"]))
    assert abs(m["gain_vs_prototypes/mean"] - gain) <= 2e-4  # values rounded to 4 places
    single = m["gain_vs_prototypes/n"] == 1
    gain_held = m["gain_vs_prototypes/mean"] >= margin - 1e-4 and (single or m["gain_vs_prototypes/lo"] > 0)
    assert m["held_gain"] is gain_held
    assert m["held_drop"] is (m["mamba-fscil/base_drop"] <= max_drop)
    assert claim.held is (m["held_gain"] and m["held_drop"])
    assert _verdict(claim) == ["HELD" if claim.held else "NOT HELD"]


def test_quick_claim_is_measured_on_a_base_trained_backbone():
    claim = reproduce("mamba-fscil", "quick")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "mamba-fscil" and claim.scale == "quick" and m["seeds"] == 1
    for k in VARIANTS:
        assert 0.0 <= m[f"{k}/last_session_accuracy"] <= 1.0, k
    _consistent(claim, margin=0.02, max_drop=0.03)
    # each Mamba-FSCIL arm's inc_lr came from the validation grid
    grid = load_spec("mamba-fscil", "quick")["inc_lr_grid"]
    assert set(m["inc_lr_chosen"]) == {"mamba-fscil", "no-class-sensitive", "forward-separation"}
    assert all(v in grid for v in m["inc_lr_chosen"].values())
    # the backbone is trained on the base session: base classes are learned well (0.98 measured)
    assert m["baseline/base_first"] >= 0.9 and m["mamba-fscil/base_first"] >= 0.9, m
    # the dynamic branch learns the novel classes (0.42 measured; 0 if it stayed at its zero start)
    assert m["mamba-fscil/novel_last"] >= 0.2, m
    # quick scale: +1.7 points over prototypes on the same backbone, under the 2-point margin
    assert -0.10 <= m["gain_vs_prototypes/mean"] <= 0.10, m


def test_broken_dynamic_branch_is_not_held_and_no_margin_holds():
    settings = load_spec("mamba-fscil", "quick")
    settings["stream"]["sessions"] = 2
    settings["inc_lr_grid"] = [0.01]
    settings["base"]["base_epochs"] = 5
    settings["variants"] = {k: settings["variants"][k] for k in ("baseline", "mamba-fscil")}
    settings["ablations"] = []
    # the dynamic branch never trained: novel classes are scored against untrained ETF vertices
    broken = {**settings, "variants": {**settings["variants"], "mamba-fscil": {"method": "mamba-fscil"}}}
    broken["variants"]["mamba-fscil"]["config"] = {"dynamic": False}
    claim = check(broken, "quick")
    _consistent(claim, margin=0.02, max_drop=0.03)
    assert claim.measured["mamba-fscil/novel_last"] <= 0.05 and claim.held is False
    # the same broken run with margins that cannot fail is HELD: the verdict follows the criterion
    loose = {**broken, "margin": -1.0, "max_base_drop": 1.0}
    claim = check(loose, "quick")
    _consistent(claim, margin=-1.0, max_drop=1.0)
    assert claim.held is True
