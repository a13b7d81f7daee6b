"""The experience-balanced buffer and GDumb's greedy class-balanced sampler."""

import pytest
import torch

from lifelong.memory import ExperienceBalancedBuffer, GreedyClassBalancedBuffer, make_buffer
from lifelong.methods import make_learner


def _offer(b, g, e, n, start=0):
    """Offer experience ``e``'s items ``start..start+n-1`` (x = 1000 e + item id, y = e) in batches of 7."""
    ids = torch.arange(start, start + n)
    for chunk in ids.split(7):
        b.add(g, x=(1000 * e + chunk).float()[:, None], y=torch.full((len(chunk),), e))


def test_capacity_is_resplit_equally_per_experience():
    g = torch.Generator().manual_seed(0)
    b = make_buffer("experience-balanced", 10)
    for e, expected in enumerate([[10], [5, 5], [4, 3, 3], [3, 3, 2, 2]]):
        b.new_experience(e, g)
        _offer(b, g, e, 40)
        m = b.all()
        assert torch.bincount(m["y"]).tolist() == expected
        assert torch.equal(m["x"][:, 0].long() // 1000, m["y"])  # rows stay aligned with their experience
        assert len(m["x"][:, 0].unique()) == len(b) == 10
        assert b.groups() == list(range(e + 1))


def test_reservoir_within_experience_and_random_shrink_are_uniform():
    # 60 items of experience 0 into 20 slots, then shrunk to 10 when experience 1 opens:
    # each item should be kept with probability 20/60, then 10/60, early and late items alike.
    kept, kept_after = torch.zeros(60), torch.zeros(60)
    runs = 300
    for seed in range(runs):
        g = torch.Generator().manual_seed(seed)
        b = ExperienceBalancedBuffer(20)
        b.new_experience(0, g)
        _offer(b, g, 0, 60)
        kept[b.all()["x"][:, 0].long()] += 1
        b.new_experience(1, g)
        kept_after[b.all(group=0)["x"][:, 0].long()] += 1
    for freq, p in ((kept / runs, 20 / 60), (kept_after / runs, 10 / 60)):
        assert freq.mean() == pytest.approx(p, abs=1e-6)
        for block in freq.split(10):  # early, middle and late items alike
            assert block.mean() == pytest.approx(p, abs=0.04)


def test_add_without_new_experience_is_one_reservoir():
    g = torch.Generator().manual_seed(0)
    b = ExperienceBalancedBuffer(8)
    _offer(b, g, 0, 30)
    assert len(b) == 8 and b.groups() == [0]


def test_state_round_trip_continues_identically():
    g = torch.Generator().manual_seed(1)
    b = ExperienceBalancedBuffer(12)
    b.new_experience(0, g)
    _offer(b, g, 0, 30)
    b.new_experience(1, g)
    _offer(b, g, 1, 9)
    c = ExperienceBalancedBuffer(12)
    c.load_state_dict(b.state_dict())
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for buf, gen in ((b, g1), (c, g2)):
        _offer(buf, gen, 1, 20, start=9)
        buf.new_experience(2, gen)
        _offer(buf, gen, 2, 20)
    assert torch.equal(b.all()["x"], c.all()["x"]) and b.quota == c.quota and b.offered == c.offered


def test_er_selects_the_experience_balanced_policy(blobs):
    from lifelong.scenarios import class_incremental

    stream = class_incremental(blobs, tasks=2, seed=0)
    learner = make_learner("er", {"buffer": "experience-balanced", "buffer_size": 30, "epochs": 1})
    for exp in stream:
        learner.learn(exp)
    assert learner.buffer.quota == {0: 15, 1: 15}
    assert [len(learner.buffer.all(group=e)["y"]) for e in (0, 1)] == [15, 15]
    with pytest.raises(Exception, match="experience-balanced"):
        make_learner("er", {"buffer": "fifo"})


def test_greedy_class_balanced_sampler_balances():
    g = torch.Generator().manual_seed(0)
    b = GreedyClassBalancedBuffer(30)
    b.add(g, x=torch.zeros(100, 1), y=torch.zeros(100, dtype=torch.long))  # class 0 floods the memory
    assert torch.bincount(b.all()["y"]).tolist() == [30]
    b.add(g, x=torch.ones(60, 1), y=torch.tensor([1, 2] * 30))
    b.add(g, x=torch.ones(40, 1), y=torch.full((40,), 3))
    counts = torch.bincount(b.all()["y"])
    assert counts.sum() == 30 and counts.max() - counts.min() <= 1
    assert torch.equal(b.all()["x"][:, 0].long(), (b.all()["y"] > 0).long())
    c = GreedyClassBalancedBuffer(30)
    c.load_state_dict(b.state_dict())
    assert torch.equal(c.all()["y"], b.all()["y"]) and c.class_slots == b.class_slots
