"""CoDyRA adapter: gates, proximal step, schedule, merge-and-reset (arXiv 2412.01004)."""

import pytest
import torch
from torch import nn

from lifelong.adapters import (
    LoRAConfig,
    adapter_parameters,
    count_parameters,
    inject_adapter,
    load_adapter,
    lora_layers,
    save_adapter,
)
from lifelong.adapters.codyra import (
    CoDyRAConfig,
    CoDyRALinear,
    KappaSchedule,
    effective_ranks,
    gate_parameters,
    merge_and_reset,
    proximal_step,
    restore_gates,
    soft_threshold,
)
from lifelong.errors import ConfigError


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 5))


def _trained(seed=0, r=4):
    model = _mlp(seed)
    inject_adapter(model, CoDyRAConfig(r=r), "a", seed=seed)
    with torch.no_grad():  # make the update non-zero, as after training
        for layer in lora_layers(model).values():
            layer.lora_B["a"].weight.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return model


def test_config_defaults_and_registered_kind():
    c = CoDyRAConfig()
    assert c.r == 16 and c.alpha == 16.0 and c.scaling == 1.0 and c.dropout == 0.0 and c.gate_init == "normal"
    assert LoRAConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("bad", [{"gate_init": "zeros"}, {"r": 0}, {"r": 4, "alpha": -1.0}])
def test_bad_config_raises(bad):
    with pytest.raises(ConfigError):
        CoDyRAConfig(**bad)


def test_gates_are_trainable_adapter_parameters_and_get_gradients():
    model = _trained()
    gates = gate_parameters(model, "a")
    assert len(gates) == 2 and all(g.shape == (4,) for g in gates)
    ids = {id(p) for p in adapter_parameters(model, "a")}
    assert all(id(g) in ids and g.requires_grad for g in gates)
    model(torch.randn(3, 6)).sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates)
    assert count_parameters(model).adapters["a"] == 4 * (6 + 10) + 4 * (10 + 5) + 2 * 4


def test_forward_equals_gated_low_rank_update():
    model = _trained()
    layer = model[0]
    x = torch.randn(5, 6)
    a, b, g = layer.lora_A["a"].weight, layer.lora_B["a"].weight, layer.lora_gate["a"]
    expect = layer.base_layer(x) + x @ (b @ torch.diag(g) @ a).T
    torch.testing.assert_close(layer(x), expect)


def test_soft_threshold_by_hand():
    x = torch.tensor([0.5, -0.5, 0.1, -0.05, 0.0, 2.0])
    assert torch.equal(soft_threshold(x, 0.2), torch.tensor([0.3, -0.3, 0.0, 0.0, 0.0, 1.8]))


def test_proximal_step_exact_over_all_layers():
    model = _trained()
    gates = gate_parameters(model, "a")
    with torch.no_grad():
        gates[0].copy_(torch.tensor([0.5, -0.25, 0.125, -1.0]))
        gates[1].copy_(torch.tensor([0.0625, -0.0625, 2.0, -0.5]))
    zeros = proximal_step(model, 0.125, name="a")
    assert torch.equal(gates[0].detach(), torch.tensor([0.375, -0.125, 0.0, -0.875]))
    assert torch.equal(gates[1].detach(), torch.tensor([0.0, 0.0, 1.875, -0.375]))
    assert zeros == 3
    assert effective_ranks(model, "a") == {"0": 3, "2": 2}
    assert proximal_step(gates, 0.0) == 3  # zero threshold: unchanged
    with pytest.raises(ConfigError):
        proximal_step(gates, -1.0)


def test_zero_gate_prunes_its_rank_component():
    model = _trained()
    layer = model[0]
    x = torch.randn(7, 6)
    with torch.no_grad():
        layer.lora_gate["a"][1] = 0.0
        before = layer(x)
        layer.lora_A["a"].weight[1].normal_()  # a pruned component's factors no longer matter
        layer.lora_B["a"].weight[:, 1].normal_()
    torch.testing.assert_close(layer(x), before)
    assert layer.effective_rank("a") == 3


def test_merge_and_reset_keeps_function_and_base_parameter_count():
    model = _trained()
    base_count = sum(p.numel() for p in _mlp().parameters())
    x = torch.randn(9, 6)
    with torch.no_grad():
        gate_parameters(model, "a")[0][0] = 0.0
        before = model(x)
    ranks = merge_and_reset(model, "a")
    assert ranks == {"0": 3, "2": 4}
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == base_count  # zero extra inference parameters
    # with a new adapter: the function is still unchanged (B = 0) and only the new adapter trains
    merge_and_reset_new = _trained(seed=3)
    y0 = merge_and_reset_new(x).detach()
    merge_and_reset(merge_and_reset_new, "a", CoDyRAConfig(r=4), new_name="b", generator=torch.Generator())
    torch.testing.assert_close(merge_and_reset_new(x), y0, atol=1e-6, rtol=1e-5)
    assert all(p.requires_grad for p in adapter_parameters(merge_and_reset_new, "b"))
    with pytest.raises(ConfigError):
        merge_and_reset(merge_and_reset_new, "b", new_name="c")


def test_gate_init_ones_and_plain_lora_in_same_layer():
    model = _mlp()
    inject_adapter(model, CoDyRAConfig(r=3, gate_init="ones"), "a", seed=0)
    assert torch.equal(gate_parameters(model, "a")[0].detach(), torch.ones(3))
    inject_adapter(model, LoRAConfig(r=2), "plain", seed=0, activate=False)
    assert isinstance(model[0], CoDyRALinear) and model[0].rank_scale("plain") is None
    assert model[0].effective_rank("plain") == 2


def test_kappa_schedule_matches_official_staircase():
    k = KappaSchedule(500, 0.005, 0.5, 50)  # official: dense 250 steps, then linspace(0, 0.005, 50), 5 steps a level
    assert k(250) == 0.0 and k(251) == pytest.approx(0.005 / 49) and k(255) == pytest.approx(0.005 / 49)
    assert k(256) == pytest.approx(2 * 0.005 / 49) and k(500) == pytest.approx(0.005)
    short = KappaSchedule(20, 0.005, 0.5, 50, reference_steps=500)  # 10 sparse steps still reach the peak
    assert short(10) == 0.0 and short(20) == pytest.approx(0.005 * 25)
    assert k.total_shrinkage() == pytest.approx(0.65) and short.total_shrinkage() == pytest.approx(0.6875)
    for bad in (
        {"total_steps": 0, "max_kappa": 0.1},
        {"total_steps": 5, "max_kappa": -1.0},
        {"total_steps": 5, "max_kappa": 0.1, "dense_fraction": 1.0},
        {"total_steps": 5, "max_kappa": 0.1, "levels": 1},
    ):
        with pytest.raises(ConfigError):
            KappaSchedule(**bad)


def test_save_load_restores_function_and_ranks(tmp_path):
    model = _trained()
    with torch.no_grad():
        gate_parameters(model, "a")[1][2] = 0.0
    x = torch.randn(4, 6)
    y = model(x).detach()
    save_adapter(model, tmp_path / "ad", "a")
    other = _mlp()
    load_adapter(other, tmp_path / "ad", "a")
    assert restore_gates(other, "a") == effective_ranks(model, "a") == {"0": 4, "2": 3}
    torch.testing.assert_close(other(x), y)
