"""ALLoRA (arXiv 2410.09692): the coefficient, the gradient rule, the config, and the quick reproduction."""

import json

import pytest
import torch
from torch import nn

from lifelong.adapters import ALLoRAConfig, ALLoRALinear, LoRAConfig, inject_adapter, lora_layers
from lifelong.adapters.allora import allora_row_scale, delta_row_norms
from lifelong.errors import ConfigError
from lifelong.papers import format_claim, get_paper, reproduce


def test_row_scale_formula():
    norms = torch.tensor([0.0, 0.5, 2.0, 100.0])
    c = allora_row_scale(norms, eta=2.0, power=2.0)
    assert torch.allclose(c, 1 / torch.sqrt(norms**2 + 0.25))
    assert c[0] == pytest.approx(2.0)  # eta at a zero update
    assert c[3] * 100.0 == pytest.approx(1.0, rel=1e-4)  # ~ 1/||row|| for large rows
    assert torch.allclose(allora_row_scale(norms, 2.0, 1.0), 1 / torch.sqrt(norms + 0.25))


def test_row_norms_from_factors():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 7, generator=g), torch.randn(5, 3, generator=g)
    assert torch.allclose(delta_row_norms(a, b), (b @ a).norm(dim=1), atol=1e-5)


def test_config_has_no_alpha_no_dropout():
    cfg = ALLoRAConfig(r=4, target_modules=["x"])
    assert cfg.scaling == 1.0 and cfg.alpha == 4.0 and cfg.dropout == 0.0
    with pytest.raises(ConfigError, match="no scaling factor"):
        ALLoRAConfig(r=4, alpha=16)
    with pytest.raises(ConfigError, match="dropout-free"):
        ALLoRAConfig(r=4, dropout=0.1)
    with pytest.raises(ConfigError, match="eta"):
        ALLoRAConfig(r=4, eta=0.0)
    assert ALLoRAConfig.from_dict(json.loads(json.dumps(ALLoRAConfig(r=2, eta=3.0).to_dict()))).eta == 3.0


def _pair(eta=1.5, power=2.0):
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    plain = nn.Sequential(nn.Linear(6, 5))
    plain[0].load_state_dict(base.state_dict())
    al = nn.Sequential(nn.Linear(6, 5))
    al[0].load_state_dict(base.state_dict())
    inject_adapter(plain, LoRAConfig(r=2, alpha=2, target_modules=["0"], init="random"), seed=1)
    inject_adapter(al, ALLoRAConfig(r=2, eta=eta, norm_power=power, target_modules=["0"], init="random"), seed=1)
    return plain[0], al[0]


def test_forward_is_unscaled_lora_and_gradients_are_rescaled_per_row():
    plain, al = _pair()
    assert isinstance(al, ALLoRALinear)
    x = torch.randn(4, 3, 6, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y1, y2 = plain(x), al(x2)
    assert torch.allclose(y1, y2, atol=1e-6)  # same function as LoRA with alpha = r, no dropout
    w = torch.randn_like(y1)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    # the input gradient (to earlier layers) is untouched
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)
    # dL/dB and dL/dA use the output gradient scaled by c_i per output row
    a, b = al.lora_A["default"].weight, al.lora_B["default"].weight
    c = allora_row_scale((b @ a).norm(dim=1), 1.5, 2.0).detach()
    gs = (w * c).reshape(-1, 5)
    xf = x.detach().reshape(-1, 6)
    assert torch.allclose(al.lora_B["default"].weight.grad, gs.T @ (xf @ a.T), atol=1e-5)
    assert torch.allclose(al.lora_A["default"].weight.grad, (gs @ b).T @ xf, atol=1e-5)
    assert not torch.allclose(al.lora_A["default"].weight.grad, plain.lora_A["default"].weight.grad)


def test_b_gradient_at_zero_update_is_eta_times_lora():
    plain, al = _pair(eta=3.0)
    with torch.no_grad():
        for layer in (plain, al):
            layer.lora_B["default"].weight.zero_()
    x = torch.randn(8, 6)
    plain(x).pow(2).sum().backward()
    al(x).pow(2).sum().backward()
    assert torch.allclose(al.lora_B["default"].weight.grad, 3.0 * plain.lora_B["default"].weight.grad, atol=1e-5)


def test_no_custom_rule_without_grad():
    _, al = _pair()
    with torch.no_grad():
        y = al(torch.randn(2, 6))
    assert not y.requires_grad


def test_quick_reproduction_reports_the_comparison():
    claim = reproduce("allora", scale="quick")
    m = claim.measured
    assert claim.paper == "allora" and claim.scale == "quick" and m["seeds"] == 3
    for arm in ("lora", "lora_no_dropout", "allora"):
        assert 0.2 < m[f"acc_{arm}"] <= 1.0  # every arm learns the new digits (chance is 0.2)
        assert m[f"b_norm_step10_{arm}"] > 0
    # at this budget ALLoRA learns the new digits less than LoRA (0.769 vs 0.832, 3 seeds), so not held
    assert m["acc_lora"] >= m["acc_allora"] + 0.03 and claim.held is False
    # the verdict reads the numbers: a LoRA scaled to nothing falls below ALLoRA
    weak = reproduce("allora", scale="quick", sets=("arms.lora.alpha=1e-6",))
    assert weak.measured["acc_allora"] >= weak.measured["acc_lora"] + 0.1 and weak.held is True
    assert m["allora_minus_lora"] == pytest.approx(m["acc_allora"] - m["acc_lora"], abs=1e-9)
    json.dumps(claim.to_dict())
    verdict = [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]
    assert verdict == ["HELD" if claim.held else "NOT HELD"]  # "HELD" alone is also inside "NOT HELD"
    assert get_paper("37").status == "claim checked"


def test_allora_layers_in_a_model():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    inject_adapter(model, ALLoRAConfig(r=2, target_modules="all-linear"), seed=0)
    assert all(isinstance(m, ALLoRALinear) for m in lora_layers(model).values())
    loss = model(torch.randn(5, 4)).sum()
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_B" in n)
