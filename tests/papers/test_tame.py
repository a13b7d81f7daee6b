"""Seed arXiv 2210.03869 (TAME): the quick reproduction of its claim, run as a test."""

from __future__ import annotations

import json

from lifelong.papers import format_claim, get_paper, reproduce
from lifelong.papers.tame import match_boundaries, segment_experts


def test_quick_claim_holds():
    claim = reproduce("tame")
    m = claim.measured
    assert claim.paper == "tame" and claim.scale == "quick"
    assert m["seed0_boundaries_found"] == "5/5" and m["seed0_false_alarms"] <= 1
    assert m["seed0_recurring_task_to_old_expert"] is True
    assert m["final_acc_tame"] >= m["final_acc_finetune"] + 0.20
    assert m["final_acc_tame"] >= m["final_acc_oracle"] - 0.05
    assert claim.held, claim.measured
    json.dumps(claim.to_dict())
    verdict = [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]
    assert verdict == ["HELD" if claim.held else "NOT HELD"]  # "HELD" alone is also inside "NOT HELD"
    assert get_paper("16").short_name == "tame"


def test_boundary_matching_counts_delays_and_false_alarms():
    m = match_boundaries([100, 200, 300], [100, 150, 230, 310, 600], batch_size=10, max_delay=5)
    assert m["delays"] == [0, 3, 1] and m["found"] == 3 and m["false_alarms"] == 2
    m = match_boundaries([100], [160], batch_size=10, max_delay=5)
    assert m["delays"] == [None] and m["false_alarms"] == 1
    # a detection serves one boundary only, and must not precede it
    m = match_boundaries([100, 105], [104], batch_size=1, max_delay=50)
    assert m["delays"] == [4, None] and m["false_alarms"] == 0


def test_segment_owner_is_the_majority_expert():
    switches = [{"position": 100, "to": 1}, {"position": 110, "to": 2}, {"position": 240, "to": 0}]
    assert segment_experts(switches, [100, 100, 100]) == [0, 2, 0]
