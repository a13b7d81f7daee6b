"""Synaptic Intelligence (arXiv 1703.04200) and its path-integral importance."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.optim.importance import PathIntegral, quadratic_penalty
from lifelong.scenarios import class_incremental


def test_path_integral_is_the_loss_decrease_on_a_quadratic():
    # L = 0.5 * a * (w - w0)^2 per coordinate; small SGD steps: sum(-g * dw) ~ L(start) - L(end) per coordinate
    a = torch.tensor([1.0, 4.0, 0.25])
    w0 = torch.tensor([1.0, -2.0, 3.0])
    w = torch.zeros(3, requires_grad=True)
    pi = PathIntegral(xi=0.1)
    pi.start({"w": w})
    start_loss = 0.5 * a * (w.detach() - w0) ** 2
    opt = torch.optim.SGD([w], lr=0.005)
    for _ in range(500):
        loss = (0.5 * a * (w - w0) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        g = w.grad.clone()
        opt.step()
        pi.step({"w": w}, {"w": g})
    end_loss = 0.5 * a * (w.detach() - w0) ** 2
    torch.testing.assert_close(pi.omega["w"], start_loss - end_loss, rtol=0.015, atol=1e-4)
    omega = pi.omega["w"].clone()
    delta = w.detach() - torch.zeros(3)
    pi.consolidate({"w": w})
    torch.testing.assert_close(pi.importance["w"], omega / (delta**2 + 0.1))
    assert torch.equal(pi.anchor["w"], w.detach())
    assert torch.equal(pi.omega["w"], torch.zeros(3))  # reset for the next experience


def test_importance_is_kept_non_negative():
    pi = PathIntegral(xi=1.0)
    w = torch.zeros(2)
    pi.start({"w": w})
    pi.step({"w": torch.tensor([1.0, 1.0])}, {"w": torch.tensor([1.0, -1.0])})  # omega = [-1, +1]
    pi.consolidate({"w": torch.tensor([1.0, 1.0])})
    assert torch.equal(pi.importance["w"], torch.tensor([0.0, 0.5]))


def _stream(blobs):
    return class_incremental(blobs, tasks=2, seed=0)


def test_omega_uses_the_task_loss_gradient_without_the_penalty(blobs):
    stream = _stream(blobs)
    si = make_learner("si", {"si_c": 10.0, "xi": 0.1, "epochs": 2, "momentum": 0.0, "hidden": (16,), "lr": 0.02})
    si.learn(stream[0])
    assert si.path.importance and any(t.abs().sum() > 0 for t in si.path.importance.values())
    x, y = stream[1].train_tensors()
    si.classes.observe(stream[1], y)
    si.before_experience(stream[1])
    for s in range(0, 48, 16):  # move away from the anchor, where the penalty's gradient is 0
        si.train_step(x[s : s + 16], y[s : s + 16], stream[1])
    omega0 = {n: w.clone() for n, w in si.path.omega.items()}
    before = {n: p.detach().clone() for n, p in si.model.named_parameters()}
    # the task loss gradient at the parameters before the step, by hand
    si.model.zero_grad()
    xb, yb = x[48:64], y[48:64]
    ce = F.cross_entropy(si.model(xb).masked_fill(~si.classes.seen, float("-inf")), yb)
    ce.backward()
    g_task = {n: p.grad.clone() for n, p in si.model.named_parameters()}
    si.train_step(xb, yb, stream[1])
    for n, p in si.model.named_parameters():
        expected = -g_task[n] * (p.detach() - before[n])
        torch.testing.assert_close(si.path.omega[n] - omega0[n], expected, rtol=1e-3, atol=1e-7)


def test_penalty_keeps_important_weights_near_the_anchor(blobs):
    stream = _stream(blobs)
    drift = {}
    for c in (0.0, 10.0):
        si = make_learner("si", {"si_c": c, "epochs": 3, "hidden": (16,)})
        si.learn(stream[0])
        imp, anchor = dict(si.path.importance), dict(si.path.anchor)
        si.learn(stream[1])
        drift[c] = float(quadratic_penalty(si.model.named_parameters(), imp, anchor).detach())
    assert drift[10.0] < 0.5 * drift[0.0]


def test_bad_settings_raise():
    with pytest.raises(ConfigError, match="xi"):
        make_learner("si", {"xi": 0.0})
    with pytest.raises(ConfigError, match="si_c"):
        make_learner("si", {"si_c": -1.0})
    with pytest.raises(ConfigError, match="loss_scope"):
        make_learner("si", {"loss_scope": "all"})
