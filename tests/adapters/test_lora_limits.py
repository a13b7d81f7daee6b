"""Seed arXiv 2406.03136: exact LoRA gradient of an attention head and its chained low-rank approximation."""

import json
import math

import pytest
import torch

from lifelong.adapters.lora_limits import (
    exact_gradients,
    loss_autograd,
    lowrank_gradients,
    make_problem,
    relative_error,
    scale_to_bound,
    taylor_feature_count,
    taylor_features,
)
from lifelong.errors import ConfigError
from lifelong.papers import format_claim, reproduce


@pytest.mark.parametrize("targets", [("q", "v"), ("q", "k", "v")])
def test_exact_closed_form_matches_autograd(targets):
    p = make_problem(48, 6, 3, targets=targets, seed=1)
    assert relative_error(exact_gradients(p, block=16), loss_autograd(p)) < 1e-12


def test_taylor_kernel_is_the_exp_polynomial():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    s = q @ k.T
    for degree in (0, 1, 3, 4):
        phi, psi = taylor_features(q, degree), taylor_features(k, degree)
        assert phi.shape[1] == taylor_feature_count(5, degree) == math.comb(5 + degree, degree)
        expected = sum(s**j / math.factorial(j) for j in range(degree + 1))
        assert torch.allclose(phi @ psi.T, expected, atol=1e-10)


@pytest.mark.parametrize("targets", [("q", "v"), ("q", "k", "v")])
def test_chained_approximation_converges_and_degrades_with_the_bound(targets):
    p = make_problem(96, 4, 2, targets=targets, seed=0)
    small = scale_to_bound(p, 0.5)
    assert small.max_score() == pytest.approx(0.5)
    exact = exact_gradients(small)
    errors = [relative_error(lowrank_gradients(small, g, block=32), exact) for g in (2, 4, 8)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-8  # converges to the exact gradient
    by_bound = [
        relative_error(lowrank_gradients(q, 4), exact_gradients(q))
        for q in (scale_to_bound(p, b) for b in (0.5, 1, 4, 8))
    ]
    assert by_bound[1] < 1e-2
    assert all(a < b for a, b in zip(by_bound, by_bound[1:])) and by_bound[-1] > 100 * by_bound[1]


def test_bad_arguments():
    with pytest.raises(ConfigError):
        make_problem(10, 4, 5)
    with pytest.raises(ConfigError):
        make_problem(10, 4, 2, targets=("q", "x"))
    with pytest.raises(ConfigError):
        scale_to_bound(make_problem(10, 4, 2), -1.0)


def test_quick_reproduction_measures_the_transition():
    claim = reproduce("lora-limits", scale="quick")
    m = claim.measured
    assert m["rel_error_maxS_0.5"] < m["rel_error_maxS_1"] < m["rel_error_maxS_8"]
    assert m["degree_for_1e-2_maxS_0.5"] <= m["degree_for_1e-2_maxS_8"]
    # small bounds are approximated well (1.2e-4 at max|S| = 1); at max|S| = 8 the error is 0.32, short of
    # the 0.5 the criterion asks, so the claim is not held at this length
    assert m["rel_error_maxS_1"] < 1e-3 and 0.1 < m["rel_error_maxS_8"] < 0.5
    assert claim.held is False
    assert reproduce("lora-limits", scale="quick", sets=("large_error=0.1",)).held is True
    json.dumps(claim.to_dict())
    assert "lora-limits" in format_claim(claim)
