"""TriAdaptLoRA-style rank growth (seed paper 45): masks, growth, importance, budget, bad input."""

import copy

import pytest
import torch
from torch import nn

from lifelong.adapters import adapter_parameters, inject_adapter, lora_layers, merge_adapters
from lifelong.adapters.triadaptlora import (RankGrowthController, TriAdaptLoRAConfig, active_parameter_count,
                                            layer_importance, ranks)
from lifelong.errors import ConfigError


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 6))


def _tri(model, r=6, init_rank=1):
    inject_adapter(model, TriAdaptLoRAConfig(r=r, alpha=float(r), init_rank=init_rank,
                                             target_modules=["0", "2"]), "t", seed=0)
    return model


def test_starts_at_init_rank_and_base_function():
    base = _model()
    m = _tri(copy.deepcopy(base), init_rank=2)
    x = torch.randn(8, 10)
    assert ranks(m, "t") == {"0": 2, "2": 2}
    assert active_parameter_count(m, "t") == 2 * (10 + 20) + 2 * (20 + 20)
    assert torch.allclose(m(x), base(x))


def test_masked_components_get_no_gradient_and_growth_keeps_output():
    m = _tri(_model(), init_rank=2)
    x = torch.randn(16, 10)
    for layer in lora_layers(m).values():  # make the active part non-trivial (inactive B columns stay 0)
        with torch.no_grad():
            layer.lora_B["t"].weight[:, :2].normal_()
    m(x).pow(2).sum().backward()
    for layer in lora_layers(m).values():
        assert layer.lora_A["t"].weight.grad[2:].abs().max() == 0
        assert layer.lora_B["t"].weight.grad[:, 2:].abs().max() == 0
        assert layer.lora_A["t"].weight.grad[:2].abs().max() > 0
    before = m(x).detach()
    layer = lora_layers(m)["0"]
    assert layer.grow("t") and layer.active_rank("t") == 3
    assert torch.allclose(m(x), before)  # new component starts with B column 0
    while layer.grow("t"):
        pass
    assert layer.active_rank("t") == 6 and not layer.grow("t")


def test_importance_and_budgeted_growth_prefer_the_important_layer():
    m = _tri(_model())
    with torch.no_grad():
        lora_layers(m)["0"].lora_B["t"].weight[:, 0] = 1.0
        lora_layers(m)["2"].lora_B["t"].weight[:, 0] = 0.01
    imp = layer_importance(m, "t")
    assert imp["0"] == 1.0 and 0 < imp["2"] < 0.1
    budget = active_parameter_count(m, "t") + 2 * 30 + 40  # room for two more in "0" and one in "2"
    ctrl = RankGrowthController(m, "t", budget=budget, t_init=0, t_final=100, delta_t=10)
    assert ctrl.threshold(0) == 1.0 and ctrl.threshold(50) == 0.5 and ctrl.step(5) == []
    assert ctrl.step(0) == ["0"]  # only the top layer passes threshold 1
    for t in range(10, 100, 10):
        ctrl.step(t)
    assert active_parameter_count(m, "t") <= budget
    assert ranks(m, "t")["0"] > ranks(m, "t")["2"]


def test_state_dict_roundtrip_and_merge():
    m = _tri(_model())
    lora_layers(m)["2"].grow("t")
    with torch.no_grad():
        for layer in lora_layers(m).values():
            layer.lora_B["t"].weight.normal_()  # masked columns too: the mask must hide them
    x = torch.randn(8, 10)
    out = m(x).detach()
    fresh = _tri(_model(1))
    fresh.load_state_dict(m.state_dict())
    assert ranks(fresh, "t") == ranks(m, "t") and torch.allclose(fresh(x), out)
    merge_adapters(m, "t")
    assert torch.allclose(m(x), out, atol=1e-5)


def test_only_adapter_parameters_train():
    m = _tri(_model())
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in adapter_parameters(m, "t")}


def test_bad_input():
    with pytest.raises(ConfigError, match="init_rank"):
        TriAdaptLoRAConfig(r=4, init_rank=5)
    with pytest.raises(ConfigError, match="larger than layer"):
        inject_adapter(_model(), TriAdaptLoRAConfig(r=7, target_modules=["4"]))  # layer 20 -> 6
    m = _tri(_model(), init_rank=3)
    with pytest.raises(ConfigError, match="budget"):
        RankGrowthController(m, "t", budget=10, t_init=0, t_final=10)
    with pytest.raises(ConfigError, match="t_init"):
        RankGrowthController(m, "t", budget=10_000, t_init=10, t_final=5)
    with torch.no_grad():
        lora_layers(m)["0"].lora_B["t"].weight[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        layer_importance(m, "t")
    with pytest.raises(ConfigError, match="no TriAdaptLoRA"):
        layer_importance(m, "other")


def test_quick_reproduction_respects_budget():
    from lifelong.papers import get_paper

    m = get_paper("triadaptlora").reproduce("quick").measured
    assert m["params_triadaptlora_max"] <= m["params_lora"]
    assert 0.0 <= m["acc_triadaptlora"] <= 1.0 and 0.0 <= m["acc_lora"] <= 1.0


def test_save_load_peft_format(tmp_path):
    from lifelong.adapters import load_adapter, save_adapter
    from lifelong.adapters.triadaptlora import restore_ranks

    m = _tri(_model())
    lora_layers(m)["0"].grow("t")
    with torch.no_grad():
        for layer in lora_layers(m).values():
            layer.lora_B["t"].weight.normal_()
    x = torch.randn(5, 10)
    out = m(x).detach()
    save_adapter(m, tmp_path, "t")
    back = _model()
    load_adapter(back, tmp_path, "t")
    assert restore_ranks(back, "t") == ranks(m, "t")
    assert torch.allclose(back(x), out, atol=1e-6)
    peft = pytest.importorskip("peft")
    assert torch.allclose(peft.PeftModel.from_pretrained(_model(), str(tmp_path))(x), out, atol=1e-6)
