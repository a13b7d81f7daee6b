"""Paper 8 (HLE, arXiv 2308.14374): the quick reproduction of its claim, and a criterion that cannot hold."""

from __future__ import annotations

import json

from lifelong.papers import format_claim, reproduce


def _verdict(claim) -> list[str]:
    """The text after ``result`` on the verdict line ("HELD" alone is also inside "NOT HELD")."""
    return [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]


def test_quick_claim_holds():
    claim = reproduce("hle", "quick")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "hle" and claim.scale == "quick"
    for key in ("coarse_acc/er", "fine_acc/er", "coarse_acc/hle", "fine_acc/hle"):
        assert 0.0 <= m[key] <= 1.0, key
    # the measured effect: HLE gains at the fine level (+0.30 measured) and keeps coarse (+0.05 measured)
    assert abs(m["fine_gain"] - (m["fine_acc/hle"] - m["fine_acc/er"])) <= 2e-4  # each value rounded to 4 places
    assert abs(m["coarse_gap"] - (m["coarse_acc/hle"] - m["coarse_acc/er"])) <= 2e-4
    assert m["fine_acc/hle"] >= m["fine_acc/er"] + 0.15, m
    assert m["coarse_acc/hle"] >= m["coarse_acc/er"] - 0.01, m
    assert m["coarse_acc/er"] >= 0.6  # the coarse level is learned by both
    assert claim.held is (m["fine_gain"] >= 0.05 and m["coarse_gap"] >= -0.01)
    assert claim.held, m
    assert _verdict(claim) == ["HELD"]


def test_a_fine_gain_beyond_reach_fails_the_claim():
    claim = reproduce("hle", "quick", sets=("min_fine_gain=0.9",))
    m = claim.measured
    assert "ER + 90 points" in claim.criterion
    assert m["fine_gain"] < 0.9 and m["coarse_gap"] >= -0.01  # only the raised margin fails
    assert claim.held is False
    assert _verdict(claim) == ["NOT HELD"]
