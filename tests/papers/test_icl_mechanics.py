"""Seed arXiv 2312.03002 (abrupt in-context classification with bursty data): the quick reproduction as a test."""

from __future__ import annotations

import json

import pytest

from lifelong.papers import format_claim, get_paper, reproduce
from lifelong.papers.icl_mechanics import icl_gain, judge_bursty, judge_iid, verdict
from lifelong.papers.spec import load_spec


@pytest.fixture(scope="module")
def claim():
    return reproduce("icl-mechanics")


def test_quick_claim_abrupt_icl_with_bursty_data_and_none_without(claim):
    m = claim.measured
    cfg = load_spec("icl-mechanics", "quick")
    t = cfg["criteria"]
    assert claim.paper == "icl-mechanics" and claim.scale == "quick"
    assert m["seed0_bursty_icl_start"] <= t["icl_start_max"] and m["seed0_bursty_icl_end"] >= t["icl_end_min"]
    assert m["seed0_bursty_gain_rise_fraction"] <= t["rise_max_fraction"]
    assert m["seed0_bursty_induction_end"] >= t["induction_min"] > m["seed0_bursty_induction_chance"]
    assert m["seed0_iid_icl_end"] <= t["iid_icl_max"] and m["seed0_iid_iwl_end"] >= t["iid_iwl_min"]
    assert m["icl bursty - iid/mean"] > 0.5
    assert claim.held, m
    json.dumps(claim.to_dict())
    verdict_line = [
        line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]
    ]
    assert verdict_line == ["HELD"]
    assert get_paper("25").short_name == "icl-mechanics" and get_paper("25").status == "claim checked"


def test_one_attention_layer_cannot_form_the_induction_head_and_is_judged_not_held():
    """The broken variant: with a single attention layer there is no induction head, so no abrupt ICL."""
    broken = reproduce("icl-mechanics", "quick", sets=("model.layers=1",))
    assert broken.measured["seed0_bursty_held"] is False
    assert broken.measured["seed0_bursty_icl_end"] < 0.9
    assert not broken.held


def _run(icl, induction=0.8, iwl=None, steps=None):
    steps = steps or list(range(0, 100 * len(icl), 100))
    return {
        "steps": steps,
        "icl": icl,
        "iwl": iwl or [0.1] * len(icl),
        "final_icl": icl[-1],
        "final_iwl": (iwl or [0.1])[-1],
        "final_induction": induction,
        "previous_token": [0.5] * len(icl),
    }


def test_judges_need_every_part():
    cfg = load_spec("icl-mechanics", "quick")
    cfg["steps"] = 1000
    jump = [0.06, 0.5, 0.5, 0.5, 0.52, 0.55, 0.99, 1.0, 1.0, 1.0, 1.0]
    assert judge_bursty(_run(jump), cfg)["held"]
    assert icl_gain([0.5, 1.0], cfg) == [0.0, 1.0]
    slow = [0.06, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]  # gain climbs over 60 % of training
    assert not judge_bursty(_run(slow), cfg)["abrupt"]
    assert not judge_bursty(_run(jump, induction=0.3), cfg)["held"]
    assert not judge_bursty(_run(jump[:-1] + [0.85]), cfg)["held"]
    assert not judge_bursty(_run([0.4] + jump[1:]), cfg)["held"]  # must start low
    assert judge_iid(_run([0.1, 0.1], iwl=[0.1, 0.95]), cfg)["held"]
    assert not judge_iid(_run([0.1, 0.1], iwl=[0.1, 0.5]), cfg)["held"]
    assert judge_iid(_run([0.1, 0.1], iwl=[0.1, 0.5]), cfg, need_iwl=False)["held"]
    result = {"runs": [{"seed": 0, "bursty": _run(jump), "iid": _run([0.06, 0.07], iwl=[0.1, 0.97])}]}
    assert verdict(result, cfg)["held"]
    result["runs"][0]["iid"] = _run([0.06, 0.6], iwl=[0.1, 0.97])  # ICL without burstiness: the claim fails
    assert not verdict(result, cfg)["held"]
