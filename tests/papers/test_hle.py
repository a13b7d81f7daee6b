"""Paper 8 (HLE, arXiv 2308.14374): the quick reproduction's verdict machinery, and variants it must reject."""

from __future__ import annotations

import json

from lifelong.papers import format_claim, reproduce


def _verdict(claim) -> list[str]:
    """The text after ``result`` on the verdict line ("HELD" alone is also inside "NOT HELD")."""
    return [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]


def test_quick_claim_verdict_follows_the_paired_criterion():
    claim = reproduce("hle", "quick")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "hle" and claim.scale == "quick"
    for key in ("coarse_acc/er", "fine_acc/er", "coarse_acc/hle", "fine_acc/hle"):
        assert 0.0 <= m[key] <= 1.0, key
    assert "per-level" in claim.criterion and "interval" in claim.criterion
    assert abs(m["fine_gain"] - (m["fine_acc/hle"] - m["fine_acc/er"])) <= 2e-4  # each value rounded to 4 places
    assert m["fine_gain_vs_er/n"] == 1 and m["lr/er"] in (1e-3, 3e-3, 1e-2)  # lr chosen on validation
    assert m["new_class_weight/hle"] in (1.0, 2.0, 4.0) and "new_class_weight/er" not in m  # HLE's knob, tuned
    assert m["coarse_acc/er"] >= 0.6 and m["fine_acc/er"] >= 0.5  # the tuned per-level ER is a real baseline
    assert claim.held is (m["fine_gain"] >= 0.05 - 1e-4 and m["coarse_gap"] >= -0.01 - 1e-4)
    assert _verdict(claim) == (["HELD"] if claim.held else ["NOT HELD"])


def test_hle_reduced_to_er_is_not_held():
    # the "HLE" arm run as ER with the same head: equal by construction, so no gain and NOT HELD
    claim = reproduce("hle", "quick", sets=("arms.hle.method=er", "lr_grid=[0.003]"))
    m = claim.measured
    assert m["fine_gain"] == 0.0 and m["coarse_gap"] == 0.0
    assert claim.held is False and _verdict(claim) == ["NOT HELD"]
    # the same run with margins a zero gain meets is HELD: the verdict reads the margins, not a constant
    loose = reproduce(
        "hle", "quick", sets=("arms.hle.method=er", "lr_grid=[0.003]", "min_fine_gain=0.0", "min_coarse_gap=0.0")
    )
    assert loose.measured["fine_gain"] == 0.0 and loose.held is True and _verdict(loose) == ["HELD"]


def test_hle_without_pseudo_labels_is_not_held(monkeypatch):
    # the paper's component removed by breaking the method: no fine pseudo-labels (loss and memory keys)
    from lifelong.methods.hle import HLE

    monkeypatch.setattr(HLE, "_targets", lambda self, y, scores: self.tree.targets(y))
    claim = reproduce("hle", "quick", sets=("lr_grid=[0.003]",))
    assert claim.measured["fine_gain"] < 0.05
    assert claim.held is False and _verdict(claim) == ["NOT HELD"]
