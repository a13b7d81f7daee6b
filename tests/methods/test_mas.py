"""Memory Aware Synapses (arXiv 1711.09601) and its output-sensitivity importance."""

import pytest
import torch
from torch import nn

from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.optim.importance import output_sensitivity, quadratic_penalty
from lifelong.scenarios import class_incremental


def test_output_sensitivity_is_the_mean_of_per_example_absolute_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4))
    x = torch.randn(10, 5)
    keep = torch.tensor([True, False, True, True])
    got = output_sensitivity(model, x, outputs=keep, chunk=3)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):  # one example at a time: |d ||f(x_i)||^2 / d theta|
        model.zero_grad()
        model(x[i : i + 1])[:, keep].pow(2).sum().backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad.abs() / len(x)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-5, atol=1e-7)
    # the absolute value is taken per example, not of the batch gradient
    model.zero_grad()
    model(x)[:, keep].pow(2).sum(1).mean().backward()
    assert any(not torch.allclose(got[n], p.grad.abs()) for n, p in model.named_parameters())


def test_importance_accumulates_and_anchor_is_the_last_solution(blobs):
    stream = class_incremental(blobs, tasks=2, seed=0)
    mas = make_learner("mas", {"epochs": 2, "hidden": (16,)})
    mas.learn(stream[0])
    first = {n: t.clone() for n, t in mas.importance.items()}
    mas.learn(stream[1])
    x, _ = stream[1].train_tensors()
    new = output_sensitivity(mas.model, x, outputs=mas.classes.seen)
    for n in first:
        torch.testing.assert_close(mas.importance[n], first[n] + new[n])
    for n, p in mas.model.named_parameters():
        assert torch.equal(mas.anchor[n], p.detach())


def test_penalty_keeps_important_weights_near_the_anchor(blobs):
    stream = class_incremental(blobs, tasks=2, seed=0)
    drift = {}
    for lam in (0.0, 10.0):
        mas = make_learner("mas", {"mas_lambda": lam, "epochs": 3, "hidden": (16,)})
        mas.learn(stream[0])
        imp, anchor = dict(mas.importance), dict(mas.anchor)
        mas.learn(stream[1])
        drift[lam] = float(quadratic_penalty(mas.model.named_parameters(), imp, anchor).detach())
    assert drift[10.0] < 0.5 * drift[0.0]


def test_bad_settings_raise():
    with pytest.raises(ConfigError, match="mas_lambda"):
        make_learner("mas", {"mas_lambda": -1.0})
    with pytest.raises(ConfigError, match="importance_samples"):
        make_learner("mas", {"importance_samples": -1})
