"""Seed Continual Learning of Large Language Models: the metric definitions and the scenario taxonomy it fixes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lifelong.evaluation import metrics
from lifelong.papers import format_claim, reproduce
from lifelong.papers.cl_llm_survey import PAPER
from lifelong.papers.spec import load_spec
from lifelong.scenarios.taxonomy import CLStage, Continuity, IncrementalSetting, describe


def test_quick_claim_holds():
    claim = reproduce("cl-llm-survey")
    assert claim.held, claim.notes
    assert claim.paper == "cl-llm-survey" and claim.scale == "quick"
    assert claim.measured["max_abs_error"] <= 1e-9
    assert claim.measured["B/forgetting"] == pytest.approx(-0.05)
    json.dumps(claim.to_dict())
    verdict = [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]
    assert verdict == ["HELD" if claim.held else "NOT HELD"]  # "HELD" alone is also inside "NOT HELD"


def test_full_claim_holds_with_invariants():
    claim = reproduce("cl-llm-survey", scale="full")
    assert claim.held
    assert claim.measured["forgetting_below_minus_bwt"] == 0
    assert claim.measured["upper_triangle_changed_metric"] == 0


def test_a_wrong_definition_fails_the_claim(monkeypatch):
    # Forgetting clipped at zero per experience (a common variant) gives 0.1 on case B, not -0.05.
    def clipped(R):
        R = np.asarray(R, dtype=float)
        T = R.shape[0]
        return float(np.mean([max(0.0, R[j : T - 1, j].max() - R[T - 1, j]) for j in range(T - 1)]))

    monkeypatch.setattr(metrics, "forgetting", clipped)
    claim = reproduce("cl-llm-survey")
    assert not claim.held
    assert "B/forgetting" in claim.notes


def test_cases_are_3x3_and_cover_every_metric():
    for spec in load_spec("cl-llm-survey", "quick")["cases"].values():
        assert np.asarray(spec["R"]).shape == (3, 3) and len(spec["initial"]) == 3
        assert set(spec["expected"]) == set(metrics.METRIC_NAMES)


def test_paper_entry():
    assert PAPER.number == 48 and PAPER.status == "claim checked"
    assert PAPER.implemented_by == ("lifelong.evaluation.metrics", "lifelong.scenarios.taxonomy")


def test_taxonomy():
    assert {s.name for s in CLStage} >= {"CPT", "DAP", "CFT"}
    assert CLStage("dap") is CLStage.DAP and CLStage.CPT == "cpt"
    assert CLStage.CFT.full_name == "continual fine-tuning"
    assert {c.value for c in Continuity} == {"vertical", "horizontal"}
    assert {s.value for s in IncrementalSetting} == {
        "class-incremental",
        "task-incremental",
        "domain-incremental",
        "online",
        "task-free",
    }
    assert IncrementalSetting.TASK.task_id_at_test and not IncrementalSetting.CLASS.task_id_at_test
    assert not IncrementalSetting.TASK_FREE.boundaries_known
    info = describe()
    json.dumps(info)
    assert list(info["stages"]) == ["cpt", "dap", "cft"]
    for group in info.values():
        for entry in group.values():
            assert entry["description"]
