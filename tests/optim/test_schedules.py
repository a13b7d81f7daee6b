"""Learning-rate schedules (arXiv 2310.07831; LAMB's warm-up + decay, arXiv 1904.00962)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.optim import (
    MultiplierSchedule,
    build_schedule,
    global_grad_norm,
    list_schedules,
    refined_schedule,
    schedule_multipliers,
)


def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs(sched, opt, n):
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_list_schedules():
    assert list_schedules() == ["constant", "cosine", "linear", "refined"]


@pytest.mark.parametrize("steps", [2, 7, 100, 2001])
def test_constant_norms_give_exactly_linear_decay(steps):
    """The paper's identity: refinement of constant gradient norms is linear decay."""
    lin = schedule_multipliers("linear", steps)
    assert lin[0] == 1.0 and lin[-1] == 0.0
    assert np.allclose(np.diff(lin), -1.0 / (steps - 1), atol=1e-15, rtol=0)
    for value in (1e-3, 1.0, 42.0):
        ref = refined_schedule(np.full(steps, value))
        assert np.abs(ref - lin).max() <= 1e-12
    # the same through the scheduler objects
    o1, o2 = _opt(), _opt()
    a = _lrs(build_schedule("linear", o1, steps), o1, steps)
    b = _lrs(build_schedule("refined", o2, steps, grad_norms=np.full(steps, 3.0)), o2, steps)
    assert np.abs(np.array(a) - np.array(b)).max() <= 1e-12


def test_refined_closed_form_by_hand_without_smoothing():
    g = np.array([4.0, 2.0, 1.0, 2.0, 0.5])
    w = g**-2.0
    expected = np.array([w[t] * w[t + 1 :].sum() for t in range(4)] + [0.0])
    expected /= expected.max()
    assert np.allclose(refined_schedule(g, smoothing=0.0), expected, atol=1e-15)
    w1 = g**-1.0  # the L1 / Adam variant
    e1 = np.array([w1[t] * w1[t + 1 :].sum() for t in range(4)] + [0.0])
    assert np.allclose(refined_schedule(g, smoothing=0.0, power=1.0), e1 / e1.max(), atol=1e-15)


def test_refined_shapes_warmup_and_annealing():
    t = np.arange(1000)
    large_early = 1.0 + 9.0 * np.exp(-t / 50.0)
    s = refined_schedule(large_early)
    assert np.argmax(s) > 0 and s[0] < 0.5 * s.max()  # a warm-up appears by itself
    rising_late = 1.0 + 4.0 * (t > 800)
    s2 = refined_schedule(rising_late, smoothing=0.0)
    lin = schedule_multipliers("linear", 1000)
    assert s2[850] < 0.5 * lin[850]  # faster annealing where norms grow
    assert refined_schedule(large_early, total_steps=250).shape == (250,)


def test_median_smoothing_removes_spikes():
    g = np.ones(200)
    g[5::17] = 100.0  # isolated spikes (the recipe pads only the end by reflection, so not at step 0)
    assert np.abs(refined_schedule(g) - schedule_multipliers("linear", 200)).max() <= 1e-12


def test_linear_and_cosine_with_warmup_values():
    lin = schedule_multipliers("linear", 7, warmup_steps=2)
    assert np.allclose(lin, [1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25, 0.0])
    cos = schedule_multipliers("cosine", 7, warmup_steps=2)
    assert np.allclose(cos[:3], [1 / 3, 2 / 3, 1.0]) and cos[-1] == pytest.approx(0.0, abs=1e-15)
    assert cos[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert np.all(np.diff(cos[2:]) <= 0)
    const = schedule_multipliers("constant", 5, warmup_steps=1)
    assert np.allclose(const, [0.5, 1, 1, 1, 1])
    assert np.allclose(schedule_multipliers("linear", 1), [1.0])


def test_scheduler_steps_then_stops_with_clear_error():
    opt = _opt(0.2)
    sched = build_schedule("cosine", opt, 5)
    lrs = _lrs(sched, opt, 5)  # one scheduler step after each of the 5 optimizer steps is fine
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(0.0, abs=1e-12) and lrs[5] == 0.0
    assert sched.get_last_lr() == [0.0]
    with pytest.raises(ConfigError, match="built for 5 steps"):
        sched.step()
    with pytest.raises(ConfigError, match="step\\(\\)"):
        build_schedule("linear", _opt(), 3).step(2)


def test_scheduler_state_dict_round_trip_weights_only():
    o1, o2 = _opt(), _opt()
    s1 = build_schedule("refined", o1, 50, grad_norms=np.linspace(5, 1, 50))
    _lrs(s1, o1, 20)
    buf = io.BytesIO()
    torch.save(s1.state_dict(), buf)
    buf.seek(0)
    s2 = build_schedule("linear", o2, 50)
    s2.load_state_dict(torch.load(buf, weights_only=True))
    assert _lrs(s1, o1, 30)[1:] == _lrs(s2, o2, 30)[1:]
    with pytest.raises(ConfigError):
        s2.step()


def test_multiplier_schedule_per_group_base_lrs():
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 1.0}, {"params": [q], "lr": 0.1}], lr=1.0)
    MultiplierSchedule(opt, [0.5, 0.25], name="halves")
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.05]
    with pytest.raises(ConfigError, match="multipliers"):
        MultiplierSchedule(_opt(), [1.0, float("nan")])


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(name="step"), "unknown schedule"),
        (dict(total_steps=0), "total_steps"),
        (dict(total_steps=2.5), "total_steps"),
        (dict(warmup_steps=10), "warmup_steps"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(name="refined"), "grad_norms"),
        (dict(name="refined", grad_norms=[1.0, 2.0], warmup_steps=1), "warm-up"),
        (dict(name="refined", grad_norms=[1.0, float("nan"), 2.0]), "finite"),
        (dict(name="refined", grad_norms=[1.0, -2.0]), "finite"),
        (dict(name="refined", grad_norms=[1.0]), "at least 2"),
        (dict(name="refined", grad_norms=[0.0, 0.0]), "zero"),
        (dict(name="refined", grad_norms=[1.0, 2.0], smoothing=2.0), "smoothing"),
        (dict(name="refined", grad_norms=[1.0, 2.0], power=0.0), "power"),
    ],
)
def test_bad_schedule_input(kwargs, word):
    args = dict(name="linear", total_steps=10)
    args.update(kwargs)
    name, steps = args.pop("name"), args.pop("total_steps")
    with pytest.raises(ConfigError, match=word):
        build_schedule(name, _opt(), steps, **args)


def test_global_grad_norm():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    assert global_grad_norm([a, b]) == 0.0
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([-4.0])
    assert global_grad_norm([a, b]) == pytest.approx(5.0)
    assert global_grad_norm([a, b], norm_type=1) == pytest.approx(7.0)
