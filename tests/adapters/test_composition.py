"""Adapter composition (ScaLearn, arXiv 2310.01217; AdapterFusion, arXiv 2005.00247): shapes, initialisation,
parameter counts, dropout only in training, sharing across layers, and that the scales can be learned."""

from __future__ import annotations

import pytest
import torch

from lifelong.adapters.composition import (
    AdapterFusion,
    ScaLearn,
    ScaLearnUniform,
    TaskAdapter,
    composition_layers,
    fusion_regularization,
    make_composition,
    stack_deltas,
    transfer_parameters,
)
from lifelong.errors import ConfigError


def _inputs(batch=6, n=4, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, d, generator=g), torch.randn(batch, n, d, generator=g)


def test_task_adapter_shapes_residual_and_parameter_count():
    a = TaskAdapter(16, 4)
    h = torch.randn(5, 16)
    assert a.delta(h).shape == (5, 16)
    torch.testing.assert_close(a(h), h + a.delta(h))
    assert transfer_parameters(a) == 2 * 16 * 4 + 16 + 4
    assert a.down.weight.std().item() == pytest.approx(0.02, rel=0.5)  # bert init on both projections
    assert a.up.weight.abs().sum() > 0 and a.down.bias.abs().sum() == 0
    z = TaskAdapter(16, 4, init="zero_up")
    torch.testing.assert_close(z(h), h)  # starts as the identity
    with pytest.raises(ConfigError):
        TaskAdapter(16, 4, init="nope")
    with pytest.raises(ConfigError):
        TaskAdapter(16, 4, nonlinearity="nope")


def test_stack_deltas_stacks_per_adapter():
    ads = [TaskAdapter(8, 2) for _ in range(3)]
    h = torch.randn(4, 8)
    ups = stack_deltas(ads, h)
    assert ups.shape == (4, 3, 8)
    torch.testing.assert_close(ups[:, 1], ads[1].delta(h))


@pytest.mark.parametrize("cls, width", [(ScaLearn, 16), (ScaLearnUniform, 1)])
def test_scalearn_init_shape_count_and_formula(cls, width):
    n, d = 4, 16
    m = cls(n, d, generator=torch.Generator().manual_seed(0))
    assert m.omega.shape == (n, width)
    assert transfer_parameters(m) == n * width
    big = cls(5, 2000, generator=torch.Generator().manual_seed(1)) if width > 1 else ScaLearn(2000, 1)
    assert big.omega.mean().item() == pytest.approx(2.0 / big.n_adapters, abs=1e-4)  # N(scale / n, 0.001)
    assert big.omega.std().item() == pytest.approx(0.001, rel=0.1)
    h, ups = _inputs(n=n, d=d)
    m.eval()
    expected = (m.omega.detach().unsqueeze(0) * ups).sum(1) + h
    torch.testing.assert_close(m(h, ups), expected)
    no_res = cls(n, d, residual=False).eval()
    torch.testing.assert_close(no_res(h, ups), (no_res.omega.detach().unsqueeze(0) * ups).sum(1))


def test_scalearn_dropout_only_in_training():
    h, ups = _inputs(n=4, d=32)
    m = ScaLearn(4, 32, dropout=0.5)
    m.eval()
    torch.testing.assert_close(m(h, ups), m(h, ups))
    m.train()
    torch.manual_seed(0)
    a = m(h, ups)
    b = m(h, ups)
    assert not torch.allclose(a, b)  # a new mask on omega per call
    m0 = ScaLearn(4, 32, dropout=0.0).train()
    torch.testing.assert_close(m0(h, ups), m0.eval()(h, ups))


def test_fusion_attention_init_and_counts():
    n, d = 3, 16
    f = AdapterFusion(n, d, generator=torch.Generator().manual_seed(0)).eval()
    h, ups = _inputs(n=n, d=d)
    att = f.attention(h, ups)
    assert att.shape == (6, n)
    torch.testing.assert_close(att.sum(1), torch.ones(6))
    assert (att - 1 / n).abs().max() < 0.1  # small query/key weights: near-uniform attention at the start
    # identity value at the start: the attention-weighted sum of the raw outputs, plus h
    torch.testing.assert_close(f(h, ups), (att.unsqueeze(-1) * ups).sum(1) + h)
    assert transfer_parameters(f) == 3 * d * d + 2 * d


def test_fusion_dropout_only_in_training():
    f = AdapterFusion(3, 16, dropout=0.5)
    with torch.no_grad():  # sharper scores, so dropping them changes the output visibly
        f.query.weight.mul_(50)
    h, ups = _inputs(n=3, d=16)
    f.eval()
    torch.testing.assert_close(f(h, ups), f(h, ups))
    f.train()
    torch.manual_seed(0)
    assert not torch.allclose(f(h, ups), f(h, ups))


def test_wrong_shapes_and_kinds_are_refused():
    h, ups = _inputs(n=4, d=16)
    with pytest.raises(ConfigError, match="shape"):
        ScaLearn(3, 16)(h, ups)
    with pytest.raises(ConfigError, match="shape"):
        AdapterFusion(4, 8)(h, ups)
    with pytest.raises(ConfigError):
        make_composition("attention", 4, 16)
    with pytest.raises(ConfigError, match="equal widths"):
        composition_layers("scalearn++", 4, [16, 8])
    with pytest.raises(ConfigError):
        ScaLearn(4, 16, shape="matrix")


def test_plus_plus_shares_one_module_across_layers():
    per_layer = composition_layers("scalearn", 9, [16, 16, 16])
    shared = composition_layers("scalearn++", 9, [16, 16, 16])
    uniform_shared = composition_layers("scalearn_uniform++", 9, [16, 16, 16])
    assert transfer_parameters(per_layer) == 3 * 9 * 16
    assert transfer_parameters(shared) == 9 * 16
    assert transfer_parameters(uniform_shared) == 9  # as few as n transfer parameters
    assert shared[0] is shared[2] and per_layer[0] is not per_layer[2]
    fusion = composition_layers("fusion", 9, [16, 16])
    assert transfer_parameters(fusion) == 2 * (3 * 16 * 16 + 2 * 16)


def test_scalearn_learns_to_pick_an_adapter():
    # target = 1.5 * adapter 2's output + h: learned scales should recover omega_2 ≈ 1.5, others ≈ 0
    g = torch.Generator().manual_seed(0)
    h, ups = torch.randn(256, 8, generator=g), torch.randn(256, 4, 8, generator=g)
    target = 1.5 * ups[:, 2] + h
    m = ScaLearn(4, 8, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(300):
        loss = ((m(h, ups) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    omega = m.omega.detach()
    torch.testing.assert_close(omega[2], torch.full((8,), 1.5), atol=0.05, rtol=0.0)
    assert omega[[0, 1, 3]].abs().max() < 0.05


def test_fusion_value_regularization_pulls_toward_identity():
    f = AdapterFusion(3, 8)
    assert f.value_regularization().item() == pytest.approx(0.0, abs=1e-8)  # V starts at the identity
    with torch.no_grad():
        f.value.weight.add_(0.5 * torch.eye(8))
    assert f.value_regularization().item() == pytest.approx(8 * 0.25, rel=1e-5)
    layers = composition_layers("fusion", 3, [8, 8])
    with torch.no_grad():
        layers[1].value.weight.zero_()
    assert float(fusion_regularization([layers]).detach()) == pytest.approx(8.0, rel=1e-5)  # ||I - 0||^2 = 8
    assert fusion_regularization([composition_layers("scalearn", 3, [8])]) == 0.0
    # a gradient step on the term alone moves V back toward I
    opt = torch.optim.SGD(layers.parameters(), lr=0.1)
    opt.zero_grad()
    fusion_regularization([layers]).backward()
    opt.step()
    assert float(fusion_regularization([layers]).detach()) < 8.0
