"""Paper 50 (Mamba-FSCIL): the quick reproduction of its claim, and a criterion loose enough to hold."""

from __future__ import annotations

import json

from lifelong.papers import format_claim, reproduce

VARIANTS = ("baseline", "mamba-fscil", "no-class-sensitive", "class-mean-memory")


def _verdict(claim) -> list[str]:
    """The text after ``result`` on the verdict line ("HELD" alone is also inside "NOT HELD")."""
    return [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]


def _consistent(claim, margin: float, max_drop: float) -> None:
    """The gain is the two last-session accuracies' difference, and the verdict follows the criterion."""
    m = claim.measured
    for k in VARIANTS:
        assert 0.0 <= m[f"{k}/last_session_accuracy"] <= 1.0 and 0.0 <= m[f"{k}/base_first"] <= 1.0, k
    gain = m["mamba-fscil/last_session_accuracy"] - m["baseline/last_session_accuracy"]
    assert abs(m["gain_last_session"] - gain) <= 2e-4  # each value rounded to 4 places
    assert claim.held is (m["gain_last_session"] >= margin and m["mamba-fscil/base_drop"] <= max_drop)
    assert _verdict(claim) == ["HELD" if claim.held else "NOT HELD"]


def test_quick_claim_is_measured_and_not_held():
    claim = reproduce("mamba-fscil", "quick")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "mamba-fscil" and claim.scale == "quick" and m["seeds"] == 1
    _consistent(claim, margin=0.02, max_drop=0.03)
    # at quick scale (digits, 1-way 5-shot) the base classes are kept (drop 0.006 measured, base 0.98) ...
    assert m["mamba-fscil/base_first"] >= 0.9 and m["mamba-fscil/base_drop"] <= 0.03, m
    # ... and better than with one class-mean feature per base class (drop 0.061 measured)
    assert m["mamba-fscil/base_drop"] < m["class-mean-memory/base_drop"], m
    # ... but the prototype baseline (0.88 measured) wins the last session by ~24 points, so no claim
    assert m["baseline/last_session_accuracy"] >= 0.8, m
    assert -0.35 <= m["gain_last_session"] <= -0.10, m
    assert claim.held is False


def test_a_criterion_without_margins_holds():
    # a margin of -100 points and a 100-point drop allowance cannot fail; a shorter run keeps this test fast
    sets = ("margin=-1.0", "max_base_drop=1.0", "base.base_epochs=1", "stream.sessions=1")
    claim = reproduce("mamba-fscil", "quick", sets=sets)
    assert "1 sessions" in claim.criterion and "baseline + -100 points" in claim.criterion
    _consistent(claim, margin=-1.0, max_drop=1.0)
    assert claim.held is True
