"""Routed LoRA inventories (Poly / MHR, arXiv 2211.03831): shapes, parameter counts, routing normalisation, the
MHR-z / MHR-μ trainable sets, and parity with HF PEFT's ``peft.tuners.poly`` on the same weights."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lifelong.adapters.poly import (
    PolyConfig,
    PolyLinear,
    add_poly_tasks,
    inject_poly,
    poly_forward,
    poly_layers,
    set_poly_mode,
    trainable_count,
)
from lifelong.errors import ConfigError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 12)
        self.b = nn.Linear(12, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _net(seed=0):
    torch.manual_seed(seed)
    return Net()


@pytest.mark.parametrize("q", [1, 4])
def test_shapes_and_parameter_counts(q):
    model = _net()
    names = inject_poly(model, PolyConfig(r=2, n_skills=5, n_splits=q, n_tasks=3, target_modules=["a", "b"]), seed=0)
    assert names == ["a", "b"]
    layer = model.a
    assert isinstance(layer, PolyLinear)
    assert layer.lora_A.shape == (q, 5, 8 // q, 2) and layer.lora_B.shape == (q, 5, 2, 12 // q)
    assert layer.module_logits.shape == (3, 5 * q)
    inventory = 5 * 2 * (8 + 12) + 5 * 2 * (12 + 4)
    assert trainable_count(model) == inventory + 3 * 5 * q * 2
    assert trainable_count(model, [0]) == inventory + 5 * q * 2  # only the given task's logits row counts
    assert not any(p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)
    # B starts at zero: the wrapped model computes the base model's function
    x = torch.randn(5, 8)
    torch.testing.assert_close(poly_forward(model, x, [0, 1, 2, 0, 1]), _net()(x))


def test_split_must_divide_both_dimensions():
    with pytest.raises(ConfigError, match="divide"):
        inject_poly(_net(), PolyConfig(n_splits=3, target_modules=["b"]))
    with pytest.raises(ConfigError):
        PolyConfig(r=0)


def test_routing_weights_are_normalised_sigmoids():
    model = _net()
    inject_poly(model, PolyConfig(r=1, n_skills=4, n_splits=2, n_tasks=3, target_modules=["a"]), seed=0)
    layer = model.a
    with torch.no_grad():
        layer.module_logits.copy_(torch.randn(3, 8) * 3)
    w = layer.routing_weights(torch.tensor([2, 0]))
    assert w.shape == (2, 2, 4) and (w > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2))
    s = torch.sigmoid(layer.module_logits[2].view(2, 4))
    torch.testing.assert_close(w[0], s / s.sum(-1, keepdim=True))
    # relaxed Bernoulli only when asked and only while training: random, still normalised
    layer.config.relaxed_bernoulli = True
    layer.train()
    r1, r2 = layer.routing_weights(torch.tensor([2])), layer.routing_weights(torch.tensor([2]))
    assert not torch.allclose(r1, r2)
    torch.testing.assert_close(r1.sum(-1), torch.ones(1, 2))
    layer.eval()
    torch.testing.assert_close(layer.routing_weights(torch.tensor([2, 0])), w)
    with pytest.raises(ConfigError, match="out of range"):
        layer.routing_weights(torch.tensor([3]))


def test_heads_mix_their_own_slices():
    # one head routes to skill 0, the other to skill 1: the mixed A takes the rows of each head from its own skill
    model = _net()
    inject_poly(model, PolyConfig(r=1, n_skills=2, n_splits=2, n_tasks=1, target_modules=["a"]), seed=0)
    layer = model.a
    with torch.no_grad():
        layer.module_logits.copy_(torch.tensor([[30.0, -30.0, -30.0, 30.0]]))
    a, _ = layer.mixed_factors(torch.tensor([0]))
    torch.testing.assert_close(a[0, :4], layer.lora_A[0, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(a[0, 4:], layer.lora_A[1, 1], atol=1e-6, rtol=0)


def test_modes_select_the_trainable_parameters():
    model = _net()
    inject_poly(model, PolyConfig(r=2, n_skills=4, n_splits=2, n_tasks=3, target_modules=["a", "b"]), seed=0)
    (new,) = add_poly_tasks(model, 1, seed=1)
    assert new == 3 and model.a.module_logits.shape == (4, 8)
    z = set_poly_mode(model, "z")
    assert {id(p) for p in z} == {id(layer.module_logits) for layer in poly_layers(model).values()}
    assert trainable_count(model, [new]) == 2 * 8
    assert len(set_poly_mode(model, "adapters")) == 4 and not model.a.module_logits.requires_grad
    assert set_poly_mode(model, "frozen") == []
    set_poly_mode(model, "full")
    x = torch.randn(3, 8)
    with torch.no_grad():
        for layer in poly_layers(model).values():
            layer.lora_B.normal_()
        expected = poly_forward(model, x, [new] * 3)
        uniform = copy.deepcopy(model)
        for layer in poly_layers(uniform).values():
            layer.module_logits.zero_()  # equal logits: the uniform average of the skills
        avg = poly_forward(uniform, x, [new] * 3)
    assert not torch.allclose(expected, avg)
    mu = set_poly_mode(uniform, "mu")
    assert model.a.lora_A.shape[1] == 4 and uniform.a.lora_A.shape[1] == 1
    assert trainable_count(uniform) == sum(p.numel() for p in mu) == 2 * (8 + 12) + 2 * (12 + 4)
    with torch.no_grad():  # MHR-μ's single adapter is the average skill: A and B averaged per head
        torch.testing.assert_close(uniform.a.lora_A[:, 0], model.a.lora_A.mean(1))
        # ... and computes what uniform routing over the whole inventory computes
        torch.testing.assert_close(poly_forward(uniform, x, [new] * 3), avg, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="cannot be routed"):
        set_poly_mode(uniform, "full")
    with pytest.raises(ConfigError, match="unknown poly mode"):
        set_poly_mode(model, "everything")


def test_task_ids_are_required_and_checked():
    model = _net()
    inject_poly(model, PolyConfig(n_skills=2, n_tasks=2, target_modules=["a"]), seed=0)
    with pytest.raises(ConfigError, match="task ids"):
        model(torch.randn(2, 8))
    with pytest.raises(ConfigError, match="task ids for a batch"):
        poly_forward(model, torch.randn(3, 8), [0, 1])
    assert poly_forward(model, torch.randn(3, 8), [1]).shape == (3, 4)  # one id broadcasts


# --- parity with HF PEFT's Poly ---------------------------------------------------------------------------


def _peft_pair(q: int, relaxed: bool):
    peft = pytest.importorskip("peft")
    base = _net(3)
    cfg = dict(r=2, n_tasks=3, n_skills=5, n_splits=q, target_modules=["a", "b"])
    ref = peft.get_peft_model(copy.deepcopy(base), peft.PolyConfig(init_weights=False, **cfg))
    ours = copy.deepcopy(base)
    inject_poly(ours, PolyConfig(init_b_zero=False, relaxed_bernoulli=relaxed, **cfg), seed=1)
    g = torch.Generator().manual_seed(2)
    for name in ("a", "b"):
        mine, theirs = ours.get_submodule(name), ref.base_model.model.get_submodule(name)
        with torch.no_grad():
            mine.lora_A.copy_(theirs.poly_lora_A["default"])
            mine.lora_B.copy_(theirs.poly_lora_B["default"])
            mine.module_logits.copy_(torch.randn(mine.module_logits.shape, generator=g))
            theirs.poly_router["default"].module_logits.copy_(mine.module_logits)
    return ours, ref


@pytest.mark.parametrize("q", [1, 4])
def test_parity_with_peft_poly(q):
    """Same weights, same outputs (atol 1e-5) and same gradients, for Poly (q = 1) and MHR (q = 4)."""
    ours, ref = _peft_pair(q, relaxed=False)
    x = torch.randn(6, 3, 8)  # PEFT's Poly layer needs (batch, seq, features)
    t = torch.tensor([0, 1, 2, 2, 1, 0])
    ours.eval(), ref.eval()
    out_ours, out_ref = poly_forward(ours, x, t), ref.base_model(x, task_ids=t)
    torch.testing.assert_close(out_ours, out_ref, atol=1e-5, rtol=1e-5)
    out_ours.square().sum().backward()
    out_ref.square().sum().backward()
    theirs = ref.base_model.model.b
    torch.testing.assert_close(ours.b.lora_A.grad, theirs.poly_lora_A["default"].grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        ours.b.module_logits.grad, theirs.poly_router["default"].module_logits.grad, atol=1e-4, rtol=1e-4
    )
    # a 2-D batch (our extension) equals the 3-D computation with one position
    torch.testing.assert_close(poly_forward(ours, x[:, 0], t), out_ref[:, 0], atol=1e-5, rtol=1e-5)


def test_parity_with_peft_relaxed_bernoulli_in_training():
    """PEFT always samples a relaxed Bernoulli in training mode; with the flag set we draw the same noise."""
    ours, ref = _peft_pair(4, relaxed=True)
    x, t = torch.randn(4, 2, 8), torch.tensor([0, 1, 2, 1])
    ours.train(), ref.train()
    torch.manual_seed(5)
    out_ours = poly_forward(ours, x, t)
    torch.manual_seed(5)
    out_ref = ref.base_model(x, task_ids=t)
    torch.testing.assert_close(out_ours, out_ref, atol=1e-5, rtol=1e-5)
    # our default (flag off, the MHR T0 configuration) keeps the deterministic sigmoid while training
    ours_plain, _ = _peft_pair(4, relaxed=False)
    ours_plain.train()
    torch.testing.assert_close(poly_forward(ours_plain, x, t), poly_forward(ours_plain, x, t))


def test_collapsed_mu_trains_like_an_average_selector():
    """mttl's MuZ keeps every skill trainable under uniform weights (each skill gets 1/S of the mixed gradient);
    under Adam (scale-invariant up to eps) every skill moves alike, so their average follows the collapsed single
    adapter's trajectory."""
    torch.manual_seed(0)
    avg_sel = _net()
    inject_poly(avg_sel, PolyConfig(r=2, n_skills=4, n_splits=2, n_tasks=1, target_modules=["a", "b"]), seed=3)
    with torch.no_grad():
        for layer in poly_layers(avg_sel).values():
            layer.lora_B.normal_()
            layer.module_logits.zero_()  # uniform weights, frozen below: an AverageSelector
    mu = copy.deepcopy(avg_sel)
    opt_avg = torch.optim.Adam(set_poly_mode(avg_sel, "adapters"), lr=1e-2)
    opt_mu = torch.optim.Adam(set_poly_mode(mu, "mu"), lr=1e-2)
    x, y = torch.randn(16, 8), torch.randn(16, 4)
    with torch.no_grad():
        before = poly_forward(mu, x, [0] * 16)
    for _ in range(20):
        for model, opt in ((avg_sel, opt_avg), (mu, opt_mu)):
            loss = torch.nn.functional.mse_loss(poly_forward(model, x, [0] * 16), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        after = poly_forward(mu, x, [0] * 16)
        torch.testing.assert_close(after, poly_forward(avg_sel, x, [0] * 16), atol=1e-4, rtol=1e-4)
    assert (after - before).abs().max() > 1e-2  # the two really trained (the agreement is not vacuous)
