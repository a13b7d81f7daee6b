"""Seed arXiv 2210.03869 (TAME): the quick reproduction of its claim in the official setup, run as a test."""

from __future__ import annotations

import json

import pytest

from lifelong.papers import format_claim, get_paper, reproduce
from lifelong.papers.tame import judged, match_boundaries, segment_experts, verdict


@pytest.fixture(scope="module")
def claim():
    return reproduce("tame")


def test_quick_claim_in_the_official_setup(claim):
    """Task-local labels (the headline): detection from the input shift, paired verdicts, the ablation fails."""
    m = claim.measured
    assert claim.paper == "tame" and claim.scale == "quick" and m["labels"] == "local"
    assert m["seed0_boundaries_found"] == "5/5" and m["seed0_false_alarms"] <= 1
    assert m["seed0_recurring_task_to_old_expert"] is True
    assert m["tame - finetune/mean"] >= 0.20 and m["tame + max_gap - oracle/mean"] >= 0
    # the no-detection ablation (one expert) finds nothing and is judged NOT held by the same criteria
    assert m["ablation_boundaries_found"] == "0/5" and m["ablation_held"] is False
    assert m["tame - no-detection ablation/mean"] > 0
    assert claim.held, claim.measured
    json.dumps(claim.to_dict())
    verdict_line = [
        line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]
    ]
    assert verdict_line == ["HELD"]  # "HELD" alone is also inside "NOT HELD"
    assert get_paper("16").short_name == "tame"


def test_detector_switched_off_is_judged_not_held():
    """The broken variant: TAME whose shift test cannot fire must fail the claim."""
    broken = reproduce("tame", "quick", sets=("tame.detect=false", "lr_grid=[0.01]"))
    assert broken.measured["seed0_boundaries_found"] == "0/5"
    assert broken.measured["detection_ok_every_seed"] is False
    assert not broken.held


def test_verdict_needs_every_part():
    cfg = {"max_false_alarms": 1, "min_gain": 0.2, "max_gap": 0.05}
    good = {"found": 5, "boundaries": 5, "false_alarms": 1, "recurring_same_expert": True}
    assert judged(good, cfg)
    assert not judged({**good, "found": 4}, cfg) and not judged({**good, "false_alarms": 2}, cfg)
    assert not judged({**good, "recurring_same_expert": False}, cfg)

    def result(tame, ablation, oracle, finetune):
        runs = [
            {"tame": {**good, "acc": t}, "ablation": {**good, "acc": a}, "oracle": o, "finetune": f}
            for t, a, o, f in zip(tame, ablation, oracle, finetune)
        ]
        return {"runs": runs}

    ok = result([0.9, 0.92, 0.91], [0.5, 0.52, 0.55], [0.92, 0.93, 0.93], [0.55, 0.6, 0.5])
    assert verdict(ok, cfg)["held"]
    # 10 pts under the oracle: not non-inferior within 5 pts
    assert not verdict(result([0.8, 0.82, 0.81], [0.5] * 3, [0.93, 0.92, 0.94], [0.5] * 3), cfg)["held"]
    # gain over fine-tuning below the 20-pt margin
    assert not verdict(result([0.9, 0.92, 0.91], [0.5] * 3, [0.9] * 3, [0.8, 0.8, 0.8]), cfg)["held"]
    # detection not better than the ablation
    assert not verdict(result([0.9, 0.92, 0.91], [0.91, 0.92, 0.9], [0.9] * 3, [0.5] * 3), cfg)["held"]


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
