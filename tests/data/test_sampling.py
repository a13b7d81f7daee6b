"""cycle_batches: the drop-last cycling mini-batch sampler of the paper reproductions."""

import pytest
import torch

from lifelong.data import cycle_batches
from lifelong.errors import ConfigError, DataError


def _hand_loop(n, b, steps, g):
    order, pos = torch.randperm(n, generator=g), 0
    out = []
    for _ in range(steps):
        if pos + b > len(order):
            order, pos = torch.randperm(n, generator=g), 0
        out.append(order[pos : pos + b])
        pos += b
    return out


@pytest.mark.parametrize("n,b,steps", [(10, 3, 11), (12, 4, 9), (5, 5, 3), (7, 1, 0)])
def test_same_indices_and_generator_state_as_hand_loop(n, b, steps):
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    got = list(cycle_batches(n, b, steps, g1))
    want = _hand_loop(n, b, steps, g2)
    assert len(got) == steps
    assert all(torch.equal(a, w) for a, w in zip(got, want))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_first_permutation_drawn_at_call_and_reshuffles_lazily():
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    it = cycle_batches(6, 4, 2, g)
    assert not torch.equal(g.get_state(), before)  # drawn eagerly, like the hand loop's first randperm
    after_first = g.get_state()
    next(it)
    assert torch.equal(g.get_state(), after_first)  # first batch needs no reshuffle
    next(it)
    assert not torch.equal(g.get_state(), after_first)  # 4 + 4 > 6: reshuffled before the second batch


def test_every_epoch_is_a_permutation():
    n, b = 10, 5
    batches = list(cycle_batches(n, b, 8, torch.Generator().manual_seed(3)))
    for e in range(4):
        epoch = torch.cat(batches[2 * e : 2 * e + 2])
        assert torch.equal(epoch.sort().values, torch.arange(n))


@pytest.mark.parametrize(
    "args,err",
    [
        ((0, 1, 1), DataError),
        ((5, 0, 1), ConfigError),
        ((5, 6, 1), ConfigError),
        ((5, 2, -1), ConfigError),
        ((5, 2.0, 1), ConfigError),
    ],
)
def test_bad_arguments_raise(args, err):
    with pytest.raises(err):
        cycle_batches(*args, torch.Generator())
