"""Replay buffers."""

import pytest
import torch

from lifelong.errors import CheckpointError, ConfigError
from lifelong.memory import ClassBalancedBuffer, ReservoirBuffer, make_buffer


def test_reservoir_fills_then_keeps_capacity():
    g = torch.Generator().manual_seed(0)
    b = ReservoirBuffer(50)
    b.add(g, x=torch.arange(30).float()[:, None], y=torch.arange(30))
    assert len(b) == 30
    assert torch.equal(b.all()["y"], torch.arange(30))
    b.add(g, x=torch.arange(30, 1000).float()[:, None], y=torch.arange(30, 1000))
    assert len(b) == 50 and b.seen == 1000
    ys = b.all()["y"]
    assert torch.equal(b.all()["x"][:, 0].long(), ys)  # rows stay aligned
    assert len(ys.unique()) == 50


def test_reservoir_is_uniform():
    # Each of 100 items should be kept with probability 10/100.
    counts = torch.zeros(100)
    for seed in range(400):
        g = torch.Generator().manual_seed(seed)
        b = ReservoirBuffer(10)
        for s in range(0, 100, 20):
            b.add(g, y=torch.arange(s, s + 20))
        counts[b.all()["y"]] += 1
    freq = counts / 400
    assert freq.mean() == pytest.approx(0.1)
    assert freq[:20].mean() == pytest.approx(0.1, abs=0.03)
    assert freq[80:].mean() == pytest.approx(0.1, abs=0.03)


def test_class_balanced_buffer_balances():
    g = torch.Generator().manual_seed(0)
    b = ClassBalancedBuffer(40)
    b.add(g, x=torch.zeros(200, 2), y=torch.zeros(200, dtype=torch.long))  # one class floods it
    assert len(b) == 40
    b.add(g, x=torch.ones(100, 2), y=torch.ones(100, dtype=torch.long))
    b.add(g, x=torch.ones(100, 2), y=torch.full((100,), 2))
    counts = torch.bincount(b.all()["y"], minlength=3)
    assert counts.sum() == 40
    assert counts.max() - counts.min() <= 1
    assert torch.equal(b.all()["x"][:, 0].long().clamp(max=1), b.all()["y"].clamp(max=1))


def test_sample_and_state_round_trip():
    g = torch.Generator().manual_seed(0)
    b = make_buffer("reservoir", 20)
    b.add(g, x=torch.randn(30, 3), y=torch.randint(0, 5, (30,)), logits=torch.randn(30, 5))
    s = b.sample(8, g)
    assert s["x"].shape == (8, 3) and s["logits"].shape == (8, 5)
    assert len(b.sample(100, g)["y"]) == 20
    c = ReservoirBuffer(20)
    c.load_state_dict(b.state_dict())
    assert torch.equal(c.all()["x"], b.all()["x"]) and c.seen == b.seen
    with pytest.raises(CheckpointError):
        ReservoirBuffer(10).load_state_dict(b.state_dict())


def test_bad_buffers():
    with pytest.raises(ConfigError):
        ReservoirBuffer(0)
    with pytest.raises(ConfigError, match="choose one of"):
        make_buffer("fifo", 10)
