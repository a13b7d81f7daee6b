"""LT-SFT (arXiv 2110.07560) in lifelong.merging.sparse_ft: exact k, frozen entries bit-exact, reset, composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lifelong.errors import ConfigError
from lifelong.merging.sparse_ft import compose, load_sft, lottery_ticket_sft, num_to_tune, save_sft, select_top_k


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _loss(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    return lambda model, step: nn.functional.cross_entropy(model(x[step % 4 * 16 : step % 4 * 16 + 16]), y[:16])


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("n_iterations", [1, 3])
def test_mask_has_exactly_k_entries_and_the_rest_stays_bit_exact(optimizer, n_iterations):
    model = _net()
    theta0 = _state(model)
    sft = lottery_ticket_sft(
        model,
        _loss(),
        k=17,
        full_steps=5,
        sparse_steps=5,
        lr=0.05,
        n_iterations=n_iterations,
        optimizer=optimizer,
        sparse_l1=0.1,
        full_l1=0.1,
    )
    assert sft.num_selected() == 17
    after = _state(model)
    for key, mask in sft.masks.items():
        assert torch.equal(after[key][~mask], theta0[key][~mask])  # untouched entries: the same bits
        assert torch.equal(sft.diff[key][~mask], torch.zeros_like(sft.diff[key][~mask]))
    moved = sum(int((after[k] != theta0[k]).sum()) for k in theta0)
    assert 0 < moved <= 17
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in theta0.values())


def test_mask_selects_the_largest_changes():
    base = {"a": torch.zeros(4), "b": torch.zeros(2, 2)}
    tuned = {"a": torch.tensor([0.1, -5.0, 0.2, 0.0]), "b": torch.tensor([[3.0, 0.0], [-0.05, 4.0]])}
    masks = select_top_k(base, tuned, 3)
    assert masks["a"].tolist() == [False, True, False, False]
    assert masks["b"].tolist() == [[True, False], [False, True]]
    more = select_top_k(base, tuned, 2, already=masks)  # next two largest among the rest
    assert int(sum(m.sum() for m in more.values())) == 5 and more["a"][2] and more["a"][0]
    with pytest.raises(ConfigError):
        select_top_k(base, tuned, 9)  # only 8 entries


def test_reset_really_resets_to_theta0():
    model = _net()
    theta0 = _state(model)
    sft = lottery_ticket_sft(model, _loss(), k=10, full_steps=20, sparse_steps=0, lr=0.1)
    assert sft.num_selected() == 10  # the full phase moved entries, but with no sparse steps nothing remains
    for key, value in _state(model).items():
        assert torch.equal(value, theta0[key])
    assert all(float(v.abs().sum()) == 0.0 for v in sft.diff.values())


def test_sparse_phase_lowers_the_loss_and_maskable_dense_split():
    model = _net()
    loss = _loss()
    before = float(loss(model, 0).detach())
    sft = lottery_ticket_sft(
        model, loss, proportion=0.2, full_steps=30, sparse_steps=60, lr=0.05, maskable=["0.weight"]
    )
    assert set(sft.masks) == {"0.weight"} and sft.num_selected() == int(0.2 * 48)
    assert set(sft.dense) == {"0.bias", "2.weight", "2.bias"}  # tuned in full, stored in full
    assert float(loss(model, 0).detach()) < before


def test_frozen_parameters_do_not_move_and_unknown_names_fail():
    model = _net()
    theta0 = _state(model)
    lottery_ticket_sft(model, _loss(), k=5, full_steps=5, sparse_steps=5, lr=0.1, frozen=["2.weight", "2.bias"])
    assert torch.equal(model.state_dict()["2.weight"], theta0["2.weight"])
    assert all(p.requires_grad for p in model.parameters())  # restored afterwards
    with pytest.raises(ConfigError, match="no parameters named"):
        lottery_ticket_sft(model, _loss(), k=5, full_steps=1, sparse_steps=1, lr=0.1, maskable=["nope"])
    with pytest.raises(ConfigError):
        lottery_ticket_sft(model, _loss(), full_steps=1, sparse_steps=1, lr=0.1)  # neither k nor proportion
    with pytest.raises(ConfigError):
        num_to_tune(10, k=11)


def test_given_masks_are_used_without_a_full_phase():
    model = _net()
    theta0 = _state(model)
    masks = {"0.weight": torch.zeros(8, 6, dtype=torch.bool)}
    masks["0.weight"][0, :3] = True
    sft = lottery_ticket_sft(model, _loss(), full_steps=5, sparse_steps=10, lr=0.1, masks=masks, maskable=["0.weight"])
    changed = model.state_dict()["0.weight"] != theta0["0.weight"]
    assert not bool((changed & ~masks["0.weight"]).any()) and sft.num_selected() == 3


def test_composition_adds_and_keeps_the_parameter_count(tmp_path):
    base_model = _net()
    theta0 = _state(base_model)
    a = lottery_ticket_sft(_net(), _loss(1), k=12, full_steps=5, sparse_steps=5, lr=0.1)
    b = lottery_ticket_sft(_net(), _loss(2), k=12, full_steps=5, sparse_steps=5, lr=0.1)
    both = compose(theta0, a, b)
    assert set(both) == set(theta0)
    for key in theta0:
        assert both[key].shape == theta0[key].shape
        torch.testing.assert_close(both[key], theta0[key] + a.diff[key] + b.diff[key])
    torch.testing.assert_close(compose(theta0), theta0)
    path = save_sft(a, tmp_path / "a.safetensors")
    back = load_sft(path)
    assert back.num_selected() == a.num_selected()
    for key in a.diff:
        assert torch.equal(back.diff[key], a.diff[key]) and torch.equal(back.masks[key], a.masks[key])
    base_model.load_state_dict(both)  # no new parameters: the same module loads it


def test_mask_is_the_top_k_of_an_independently_run_full_phase():
    k, steps, lr = 9, 6, 0.05
    sft = lottery_ticket_sft(_net(), _loss(), k=k, full_steps=steps, sparse_steps=3, lr=lr)
    # the full phase by hand: plain Adam on every parameter from the same start, the same batches
    model = _net()
    theta0 = _state(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss = _loss()
    for step in range(steps):
        value = loss(model, step)
        opt.zero_grad()
        value.backward()
        opt.step()
    names = list(theta0)
    delta = np.concatenate([(model.state_dict()[n] - theta0[n]).abs().reshape(-1).double().numpy() for n in names])
    top = set(np.argsort(-delta, kind="stable")[:k].tolist())
    flat = np.concatenate([sft.masks[n].reshape(-1).numpy() for n in names])
    assert set(np.flatnonzero(flat).tolist()) == top


def test_more_iterations_than_entries_still_selects_exactly_k():
    for k, n_iterations in ((2, 5), (7, 3), (0, 2)):
        model = _net()
        theta0 = _state(model)
        sft = lottery_ticket_sft(model, _loss(), k=k, full_steps=3, sparse_steps=3, lr=0.05, n_iterations=n_iterations)
        assert sft.num_selected() == k
        for key, mask in sft.masks.items():
            assert torch.equal(model.state_dict()[key][~mask], theta0[key][~mask])


def test_compose_with_overlapping_dense_tensors_later_wins_and_diffs_add():
    theta0 = _state(_net())
    a = lottery_ticket_sft(_net(), _loss(1), k=6, full_steps=4, sparse_steps=4, lr=0.1, maskable=["0.weight"])
    b = lottery_ticket_sft(_net(), _loss(2), k=6, full_steps=4, sparse_steps=4, lr=0.1, maskable=["0.weight"])
    assert set(a.dense) == set(b.dense) == {"0.bias", "2.weight", "2.bias"}
    assert not torch.allclose(a.dense["2.weight"], b.dense["2.weight"])
    ab, ba = compose(theta0, a, b), compose(theta0, b, a)
    for key in a.dense:
        torch.testing.assert_close(ab[key], b.dense[key])
        torch.testing.assert_close(ba[key], a.dense[key])
    torch.testing.assert_close(ab["0.weight"], theta0["0.weight"] + a.diff["0.weight"] + b.diff["0.weight"])
    with pytest.raises(ConfigError):
        compose({"0.weight": theta0["0.weight"]}, a)  # a dense tensor the base does not hold


def test_save_and_load_round_trip_keeps_the_dense_tensors(tmp_path):
    a = lottery_ticket_sft(_net(), _loss(1), k=6, full_steps=4, sparse_steps=4, lr=0.1, maskable=["0.weight"])
    back = load_sft(save_sft(a, tmp_path / "a.safetensors"))
    assert set(back.dense) == set(a.dense) and set(back.masks) == set(a.masks)
    for key, value in a.dense.items():
        assert torch.equal(back.dense[key], value)
    theta0 = _state(_net())
    for key, value in compose(theta0, a).items():
        assert torch.equal(compose(theta0, back)[key], value)
