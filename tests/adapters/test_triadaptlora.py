"""TriAdaptLoRA (arXiv 2501.08008): mask-mode ablation and the triangular split, growth, importance, budget, export."""

import copy

import pytest
import torch
from torch import nn

from lifelong.adapters import adapter_parameters, inject_adapter, lora_layers, merge_adapters
from lifelong.adapters.triadaptlora import (
    RankGrowthController,
    TriAdaptLoRAConfig,
    TriangularGrowthController,
    active_parameter_count,
    layer_importance,
    ranks,
)
from lifelong.errors import ConfigError


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 6))


def _tri(model, r=6, init_rank=1, triangular=False):
    """The first tests below were written for the mask-mode ablation (triangular=False)."""
    inject_adapter(
        model,
        TriAdaptLoRAConfig(r=r, alpha=float(r), init_rank=init_rank, triangular=triangular, target_modules=["0", "2"]),
        "t",
        seed=0,
    )
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


def test_quick_reproduction_verdict_machinery(monkeypatch):
    import lifelong.adapters
    from lifelong.adapters import LoRAConfig
    from lifelong.papers import get_paper, reproduce

    claim = get_paper("triadaptlora").reproduce("quick")
    m = claim.measured
    assert m["params_tri_max"] <= m["params_lora_max"] and m["params_within_budget"]
    assert m["tri_minus_lora/n"] == 3 and m["acc_tri"] > 0.85 and m["acc_lora"] > 0.85
    assert claim.held is (m["held_noninferior"] and m["held_rank_allocation"])
    # what this quick run gives: TriAdaptLoRA 1.3 points below LoRA over 3 seeds, and the perturbed layer
    # never ends with the largest rank (0 of 3 seeds), so both parts are judged not held
    assert m["alloc_tri_fraction"] == 0.0 and not m["held_rank_allocation"] and claim.held is False
    # the allocation verdict reads the fraction: with no required fraction it passes
    assert reproduce("triadaptlora", sets=("rank_check.min_fraction=0.0",)).measured["held_rank_allocation"] is True
    # non-inferiority reads the numbers: a LoRA scaled to nothing (head only) falls far below TriAdaptLoRA
    monkeypatch.setattr(lifelong.adapters, "LoRAConfig", lambda **kw: LoRAConfig(**{**kw, "alpha": 1e-6}))
    weak = reproduce("triadaptlora")
    assert weak.measured["tri_minus_lora/mean"] >= 0.1 and weak.measured["held_noninferior"] is True


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
    import peft  # requirements.lock: a missing peft fails here, it does not skip

    assert torch.allclose(peft.PeftModel.from_pretrained(_model(), str(tmp_path))(x), out, atol=1e-6)


# ---- triangular split (the paper's parameterisation, triangular=True) ---------------------------------------------
def _trained_tri(init_rank=2, seed=0):
    """A triangular adapter with non-trivial A, B, L, U on its active block (as after some training)."""
    m = _tri(_model(seed), init_rank=init_rank, triangular=True)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for layer in lora_layers(m).values():
            for p in (layer.lora_B["t"].weight, layer.lora_C_lower["t"], layer.lora_C_upper["t"]):
                p.copy_(torch.randn(p.shape, generator=g))
    return m


def test_triangular_core_structure_and_parameter_count():
    m = _trained_tri(init_rank=3)
    layer = lora_layers(m)["0"]
    c = layer.core("t")
    lower, upper = layer.lora_C_lower["t"], layer.lora_C_upper["t"]
    assert torch.equal(c[:3, :3], torch.tril(lower)[:3, :3] + torch.triu(upper)[:3, :3])
    assert c[3:].abs().max() == 0 and c[:, 3:].abs().max() == 0  # zero outside the active k x k block
    # k (in + out) + k (k + 1): row i of L and column i of U hold i + 1 entries each
    assert layer.active_parameters("t") == 3 * (10 + 20) + 3 * 4
    assert layer.growth_cost("t") == (10 + 20) + 2 * 4
    assert active_parameter_count(m, "t") == 3 * 30 + 12 + 3 * 40 + 12
    # dense update = s B C A, and the PEFT factors fold C into B
    a, b_eff = layer.factors("t")
    expect = layer.lora_B["t"].weight @ c @ layer.lora_A["t"].weight * layer.scaling("t")
    assert torch.allclose(layer.delta_weight("t"), expect, atol=1e-5)
    assert torch.allclose(b_eff @ a * layer.scaling("t"), expect, atol=1e-5) and b_eff[:, 3:].abs().max() == 0


def test_triangular_gradients_respect_the_triangles_and_the_mask():
    m = _trained_tri(init_rank=3)
    x = torch.randn(16, 10)
    m(x).pow(2).sum().backward()
    layer = lora_layers(m)["0"]
    gl, gu = layer.lora_C_lower["t"].grad, layer.lora_C_upper["t"].grad
    assert torch.triu(gl, diagonal=1).abs().max() == 0  # strict upper part of L is unused
    assert torch.tril(gu, diagonal=-1).abs().max() == 0  # strict lower part of U is unused
    assert gl[3:].abs().max() == 0 and gu[:, 3:].abs().max() == 0  # inactive rows / columns
    assert gl[:3, :3].abs().max() > 0 and gu[:3, :3].abs().max() > 0
    assert layer.lora_A["t"].weight.grad[3:].abs().max() == 0 and layer.lora_B["t"].weight.grad[:, 3:].abs().max() == 0


def test_fresh_triangular_adapter_is_lora_and_growth_preserves_the_function():
    base = _model()
    m = _tri(copy.deepcopy(base), init_rank=2, triangular=True)
    x = torch.randn(8, 10)
    assert torch.allclose(m(x), base(x))  # B = 0
    layer = lora_layers(m)["0"]
    assert torch.equal(layer.core("t")[:2, :2], torch.eye(2))  # C = I: a fresh adapter is exactly LoRA
    m = _trained_tri(init_rank=2)
    before = m(x).detach()
    layer = lora_layers(m)["0"]
    assert layer.grow("t") and layer.active_rank("t") == 3
    assert torch.allclose(m(x), before, atol=1e-6)  # new B column 0, new U column 0, new L row e_k
    m(x).pow(2).sum().backward()
    assert layer.lora_B["t"].weight.grad[:, 2].abs().max() > 0  # the new component can learn
    assert layer.lora_C_upper["t"].grad[:3, 2].abs().max() > 0
    while layer.grow("t"):
        pass
    assert layer.active_rank("t") == 6 and not layer.grow("t")


def test_triangular_growth_controller_schedule_importance_and_budget():
    m = _tri(_model(), init_rank=1, triangular=True)
    start = active_parameter_count(m, "t")
    budget = start + 3 * (30 + 2 * 2) + 40  # room for a few ranks only
    ctrl = TriangularGrowthController(m, "t", budget=budget, t_init=0, t_final=100, delta_t=10, target_total_rank=8)
    assert ctrl.step(5) == [] and ctrl.step(0) == []  # not a check step / not after t_init
    # n = int((8 - R) p), at least 1, at most the 2 layers
    assert ctrl.n_grow(10, 2) == 1 and ctrl.n_grow(50, 2) == 2 and ctrl.n_grow(50, 4) == 2 and ctrl.n_grow(50, 6) == 1
    layers = lora_layers(m)
    with torch.no_grad():  # layer "0"'s core changed more since the reference than layer "2"'s
        layers["0"].lora_C_lower["t"][0, 0] = 3.0
        layers["2"].lora_C_lower["t"][0, 0] = 1.5
    assert ctrl.step(10) == ["0"]  # n = 1 early in training: only the top layer
    assert ranks(m, "t") == {"0": 2, "2": 1}
    for t in range(20, 101, 10):
        with torch.no_grad():
            layers["2"].lora_C_lower["t"][0, 0] += 0.01
        ctrl.step(t)
        assert active_parameter_count(m, "t") <= budget
    assert sum(ranks(m, "t").values()) <= 8 and sum(ranks(m, "t").values()) > 2
    exp = TriangularGrowthController(
        _tri(_model(), triangular=True), "t", budget=10_000, t_init=0, t_final=100, target_total_rank=9, schedule="exp"
    )
    assert exp.n_grow(50, 1) == 2  # int(exp(0.5 log 8)) = int(2.83)


def test_triangular_state_dict_merge_and_peft_export_round_trip(tmp_path):
    from lifelong.adapters import load_adapter, save_adapter, unmerge_adapters
    from lifelong.adapters.triadaptlora import restore_ranks

    m = _trained_tri(init_rank=2)
    lora_layers(m)["2"].grow("t")
    with torch.no_grad():
        lora_layers(m)["2"].lora_C_upper["t"][1, 2] = 0.7
        lora_layers(m)["2"].lora_B["t"].weight[:, 2] = 0.3
    x = torch.randn(6, 10)
    out = m(x).detach()
    fresh = _tri(_model(1), triangular=True)
    fresh.load_state_dict(m.state_dict())
    assert ranks(fresh, "t") == ranks(m, "t") and torch.allclose(fresh(x), out, atol=1e-6)
    save_adapter(m, tmp_path, "t")
    back = _model()
    load_adapter(back, tmp_path, "t")
    assert lora_layers(back)["0"].is_triangular("t")
    assert restore_ranks(back, "t") == ranks(m, "t") == {"0": 2, "2": 3}
    assert torch.allclose(back(x), out, atol=1e-5)
    import peft  # requirements.lock: a missing peft fails here, it does not skip

    assert torch.allclose(peft.PeftModel.from_pretrained(_model(), str(tmp_path))(x), out, atol=1e-5)
    merge_adapters(m, "t")
    assert torch.allclose(m(x), out, atol=1e-5)
    unmerge_adapters(m)
    assert torch.allclose(m(x), out, atol=1e-6)


def test_orthogonal_penalty_and_triangular_bad_input():
    from lifelong.adapters.triadaptlora import orthogonal_penalty

    m = _tri(_model(), init_rank=2, triangular=True)
    with torch.no_grad():
        for layer in lora_layers(m).values():
            layer.lora_A["t"].weight[:2] = torch.eye(2, layer.in_features)
            layer.lora_B["t"].weight[:, :2] = torch.eye(layer.out_features, 2)
    assert float(orthogonal_penalty(m, "t").detach()) < 1e-6
    with torch.no_grad():
        lora_layers(m)["0"].lora_B["t"].weight.mul_(2)
    pen = orthogonal_penalty(m, "t")
    pen.backward()
    assert float(pen.detach()) > 0 and lora_layers(m)["0"].lora_B["t"].weight.grad.abs().max() > 0
    with pytest.raises(ConfigError, match="triangular"):
        TriAdaptLoRAConfig(r=4, triangular="yes")
    with pytest.raises(ConfigError, match="mask-mode"):
        TriangularGrowthController(_tri(_model()), "t", budget=10_000, t_init=0, t_final=10)
    with pytest.raises(ConfigError, match="schedule"):
        TriangularGrowthController(m, "t", budget=10_000, t_init=0, t_final=10, schedule="cubic")
    with pytest.raises(ConfigError, match="target_total_rank"):
        TriangularGrowthController(m, "t", budget=10_000, t_init=0, t_final=10, target_total_rank=0)
    with pytest.raises(ConfigError, match="no triangular core"):
        lora_layers(_tri(_model()))["0"].core_norm("t")
    with torch.no_grad():
        lora_layers(m)["0"].lora_C_upper["t"][0, 1] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        TriangularGrowthController(m, "t", budget=10_000, t_init=0, t_final=10)
