"""Herding exemplar selection and the fixed-size herding memory (iCaRL, arXiv 1611.07725)."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import CheckpointError, ConfigError
from lifelong.memory.herding import HerdingMemory, exemplar_means, herding_select, stratified_holdout


def _data(n=90, d=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _reference(f, m):
    """iCaRL Algorithm 4 written out one class and one pick at a time."""
    f = F.normalize(f.double(), dim=1)
    mu, running, out = f.mean(0), torch.zeros(f.shape[1], dtype=torch.float64), []
    for k in range(1, min(m, len(f)) + 1):
        best, best_cost = None, float("inf")
        for i in range(len(f)):
            if i in out:
                continue
            cost = float((mu - (running + f[i]) / k).norm())
            if cost < best_cost:
                best, best_cost = i, cost
        out.append(best)
        running += f[best]
    return out


def test_herding_matches_the_sequential_algorithm():
    x, y = _data()
    picked = herding_select(x, y, 12)
    expected = []
    for c in range(3):
        rows = torch.nonzero(y == c).flatten()
        expected += rows[_reference(x[rows], 12)].tolist()
    assert picked.tolist() == expected


def test_herded_mean_is_closer_to_the_class_mean_than_random_subsets():
    x, y = _data(n=200, classes=1)
    f = F.normalize(x.double(), dim=1)
    mu = f.mean(0)
    picked = herding_select(x, y, 10)
    herd = float((f[picked].mean(0) - mu).norm())
    g = torch.Generator().manual_seed(1)
    rand = [float((f[torch.randperm(200, generator=g)[:10]].mean(0) - mu).norm()) for _ in range(200)]
    assert herd < min(rand)
    # every prefix is a good approximation too: the first pick is the example nearest to the mean
    assert int(picked[0]) == int((f - mu).norm(dim=1).argmin())


def test_small_classes_keep_all_rows_and_no_duplicates():
    x, y = _data(n=20, classes=2)
    picked = herding_select(x, y, 50)
    assert sorted(picked.tolist()) == list(range(20))
    assert herding_select(x, y, 0).numel() == 0


def test_memory_shares_capacity_and_reduces_to_herding_prefix():
    x, y = _data(n=300, classes=6)
    mem = HerdingMemory(60)
    first = y < 2
    mem.update(x[first], y[first], lambda a: a, classes_seen=2)
    _, my = mem.tensors()
    assert torch.equal(torch.bincount(my, minlength=2), torch.tensor([30, 30]))
    before = {c: mem.tensors()[0][my == c].clone() for c in range(2)}
    later = (y >= 2) & (y < 6)
    mem.update(x[later], y[later], lambda a: a, classes_seen=6)
    mx, my = mem.tensors()
    assert len(mem) == 60 and torch.equal(torch.bincount(my, minlength=6), torch.full((6,), 10))
    for c in range(2):  # reduction keeps the first m exemplars of each class's herding order
        assert torch.equal(mx[my == c], before[c][:10])
    with pytest.raises(ConfigError, match="buffer_size"):
        mem.update(x, y, lambda a: a, classes_seen=61)


def test_memory_state_round_trip_and_capacity_check():
    x, y = _data()
    mem = HerdingMemory(30)
    mem.update(x, y, lambda a: a, classes_seen=3)
    other = HerdingMemory(30)
    other.load_state_dict(mem.state_dict())
    assert torch.equal(other.tensors()[0], mem.tensors()[0]) and torch.equal(other.tensors()[1], mem.tensors()[1])
    empty = HerdingMemory(30)
    other.load_state_dict(empty.state_dict())
    assert len(other) == 0
    with pytest.raises(CheckpointError):
        HerdingMemory(31).load_state_dict(mem.state_dict())


def test_exemplar_means_and_holdout():
    x, y = _data()
    means, present = exemplar_means(x, y, 5)
    assert present.tolist() == [True, True, True, False, False]
    f = F.normalize(x.double(), dim=1)
    torch.testing.assert_close(means[1], F.normalize(f[y == 1].mean(0), dim=0))
    held = stratified_holdout(y, torch.tensor([2, 5, 100]), torch.Generator().manual_seed(0))
    counts = torch.bincount(y, minlength=3)
    assert [int(held[y == c].sum()) for c in range(3)] == [2, 5, int(counts[2]) - 1]  # one always stays
