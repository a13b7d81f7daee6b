"""Paper 49 (Model Breadcrumbs, arXiv 2312.06795): the quick reproduction's verdict machinery, and a variant it must
reject."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong.merging import TaskVector, merge_task_vectors
from lifelong.papers import format_claim, paper_settings, reproduce


def _verdict(claim) -> list[str]:
    return [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]


@pytest.fixture(scope="module")
def quick():
    return reproduce("breadcrumbs", "quick")


def test_quick_claim_verdict_follows_the_paired_criterion(quick):
    claim, cfg = quick, paper_settings("breadcrumbs", "quick")
    json.dumps(claim.to_dict())
    m = claim.measured
    k = cfg["eval_tasks"]
    assert claim.paper == "breadcrumbs" and claim.scale == "quick"
    assert 0.5 < m["finetuned test acc (mean over tasks)"] <= 1.0  # the experts learned their tasks
    for arm in ("task_arithmetic", "ties", "breadcrumbs", "no_outlier_removal"):
        assert 0.0 < m[f"{arm} normalised acc at {k}"] < 150.0, arm
    for point in m["breadcrumbs chosen at 3 (per seed)"].split("; "):  # picked from the spec's grid
        beta, gamma, alpha = (float(v) for v in point.split(","))
        assert beta in cfg["density_grid"] and gamma in cfg["gamma_grid"] and alpha in cfg["alpha_grid"]
    assert all(p.split(",")[1] == "0" for p in m["no_outlier_removal chosen at 3 (per seed)"].split("; "))
    # the best grid value at k tasks bounds the transferred choice from above
    assert m[f"breadcrumbs best grid value at {k} (test)"] >= m[f"breadcrumbs normalised acc at {k}"] - 1e-9
    gain = m["breadcrumbs - task_arithmetic/mean"]
    assert abs(gain - (m[f"breadcrumbs normalised acc at {k}"] - m[f"task_arithmetic normalised acc at {k}"])) < 0.02
    assert m["gain_held"] is (gain >= cfg["margin"] and m["breadcrumbs - task_arithmetic/lo"] > 0)
    assert claim.held is (m["gain_held"] and m["transfer_held"])
    assert _verdict(claim) == (["HELD"] if claim.held else ["NOT HELD"])


def test_breadcrumbs_reduced_to_task_arithmetic_is_not_held():
    # density 1 and gamma 0 keep every entry: Breadcrumbs is task arithmetic, the gain is exactly 0
    sets = ("seeds=[0]", "density_grid=[1.0]", "gamma_grid=[0.0]", "alpha_grid=[0.3,0.6]", "tasks=rot0,rot90,invert")
    claim = reproduce("breadcrumbs", "quick", sets=sets + ("tune_tasks=2", "eval_tasks=3", "trend_depths=[3]"))
    m = claim.measured
    assert m["breadcrumbs - task_arithmetic/mean"] == 0.0
    assert m["gain_held"] is False and claim.held is False and _verdict(claim) == ["NOT HELD"]


def test_summed_per_task_masks_equal_the_breadcrumbs_merge():
    # the reproduction caches each task's masked vector and sums a subset's; that is the library's merge
    g = torch.Generator().manual_seed(0)
    vectors = [TaskVector({"w": torch.randn(8, 300, generator=g), "b": torch.randn(8, generator=g)}) for _ in range(3)]
    kw = {"density": 0.1, "gamma": 0.01, "per_row": True}
    one = [merge_task_vectors([v], "breadcrumbs", alpha=1.0, **kw) for v in vectors]
    merged = merge_task_vectors(vectors, "breadcrumbs", alpha=0.4, **kw)
    for key in merged:
        torch.testing.assert_close(merged[key], 0.4 * sum(o[key] for o in one))
