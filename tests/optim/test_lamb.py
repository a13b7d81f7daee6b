"""LAMB (arXiv 1904.00962): update formula, parity with references, state, exclusions, bad input."""

from __future__ import annotations

import io
import math

import pytest
import torch

from lifelong.errors import ConfigError, NonFiniteLossError
from lifelong.optim import Lamb, build_optimizer, lamb_param_groups, list_optimizers
from lifelong.papers.lamb import load_torch_optimizer_lamb, reference_lamb_tf


def _run_ours(w0, grads, **kw):
    p = torch.nn.Parameter(w0.clone())
    opt = Lamb([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach(), opt


def _fixture(shape=(6, 4), steps=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(*shape, generator=g, dtype=dtype)
    grads = [0.1 * torch.randn(*shape, generator=g, dtype=dtype) for _ in range(steps)]
    return w0, grads


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_matches_float64_tf_addons_reference(bias_correction, wd):
    w0, grads = _fixture()
    ours, _ = _run_ours(
        w0, grads, lr=0.02, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd, bias_correction=bias_correction
    )
    ref = reference_lamb_tf(w0, grads, lr=0.02, b1=0.9, b2=0.999, eps=1e-6, wd=wd, bias_correction=bias_correction)
    assert (ours - ref).abs().max().item() <= 1e-12


def test_float32_step_within_1e6_of_float64_reference():
    w0, grads = _fixture(dtype=torch.float32, steps=1)
    ours, _ = _run_ours(w0, grads, lr=0.01, weight_decay=0.01)
    ref = reference_lamb_tf(w0, grads, lr=0.01, b1=0.9, b2=0.999, eps=1e-6, wd=0.01)
    assert (ours.double() - ref).abs().max().item() <= 1e-6


def test_trust_clip_and_zero_weight_tensor():
    w0, grads = _fixture()
    w0 = w0 * 10  # norm above the clip
    ours, _ = _run_ours(w0, grads, lr=0.01, trust_clip=2.0)
    ref = reference_lamb_tf(w0, grads, lr=0.01, b1=0.9, b2=0.999, eps=1e-6, wd=0.0, clip=2.0)
    assert (ours - ref).abs().max().item() <= 1e-12
    # a zero tensor (a fresh bias) gets trust ratio 1: a plain Adam step
    zero = torch.zeros(5, dtype=torch.float64)
    g = torch.linspace(-1, 1, 5, dtype=torch.float64)
    ours, _ = _run_ours(zero, [g], lr=0.01)
    expected = -0.01 * g / (g.abs() + 1e-6)
    assert torch.allclose(ours, expected, atol=1e-12)


def test_layer_update_norm_is_lr_times_weight_norm():
    """The defining property of the layer-wise trust ratio: ||w_new - w|| = lr * ||w|| per tensor."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    for p in model.parameters():  # make the layer scales very different
        p.data.mul_(float(torch.rand(()) * 10 + 0.1))
    before = [p.detach().clone() for p in model.parameters()]
    opt = Lamb(model.parameters(), lr=0.05, weight_decay=0.01)
    model(torch.randn(32, 8)).pow(2).mean().backward()
    opt.step()
    for b, p in zip(before, model.parameters()):
        assert (p.detach() - b).norm().item() == pytest.approx(0.05 * b.norm().item(), rel=1e-4)


def test_adapt_false_is_adamw():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    oa = Lamb(a.parameters(), lr=0.01, weight_decay=0.1, adapt=False)
    ob = torch.optim.AdamW(b.parameters(), lr=0.01, weight_decay=0.1, eps=1e-6)
    for _ in range(5):
        x = torch.randn(16, 5)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_torch_optimizer(dtype):
    ref_cls = load_torch_optimizer_lamb()
    assert ref_cls is not None, "torch-optimizer (requirements.lock) is not installed"
    torch.manual_seed(1)
    shapes = [(7, 5), (5,), (3, 2, 2)]
    params0 = [torch.randn(*s, dtype=dtype) for s in shapes]
    params0[1].zero_()  # a zero tensor: trust ratio 1 in both
    steps = [[0.1 * torch.randn(*s, dtype=dtype) for s in shapes] for _ in range(3)]
    ours = [torch.nn.Parameter(p.clone()) for p in params0]
    theirs = [torch.nn.Parameter(p.clone()) for p in params0]
    # torch-optimizer's default (debias=False, clamp_value=10) is our bias_correction=False, trust_clip=10
    o1 = Lamb(ours, lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, bias_correction=False, trust_clip=10.0)
    o2 = ref_cls(theirs, lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, clamp_value=10.0, debias=False)
    for grads in steps:
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
        for p, q in zip(ours, theirs):
            assert (p - q).abs().max().item() <= 1e-6


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    oa = Lamb(lamb_param_groups(a, weight_decay=0.01), lr=0.01)
    xs = [torch.randn(8, 4) for _ in range(5)]
    for x in xs[:3]:
        oa.zero_grad()
        a(x).pow(2).mean().backward()
        oa.step()
    b.load_state_dict(a.state_dict())
    buf = io.BytesIO()
    torch.save(oa.state_dict(), buf)
    buf.seek(0)
    ob = Lamb(lamb_param_groups(b, weight_decay=0.01), lr=0.01)
    ob.load_state_dict(torch.load(buf, weights_only=True))
    for x in xs[3:]:
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_param_groups_exclusions():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model.LayerNorm = torch.nn.LayerNorm(2)  # a name in BERT style
    groups = lamb_param_groups(model, weight_decay=0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert by_id[id(names["0.weight"])]["weight_decay"] == 0.1 and by_id[id(names["0.weight"])]["adapt"]
    for n in ("0.bias", "1.weight", "1.bias", "LayerNorm.weight", "2.bias"):
        assert by_id[id(names[n])]["weight_decay"] == 0.0, n
        assert by_id[id(names[n])]["adapt"] is False, n  # TF-Addons: layer-adaptation list defaults to wd list
    groups = lamb_param_groups(model, weight_decay=0.1, exclude_from_layer_adaptation=(), exclude_norm_layers=False)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert all(g["adapt"] for g in groups)
    assert by_id[id(names["1.weight"])]["weight_decay"] == 0.1  # only names count now
    assert by_id[id(names["LayerNorm.weight"])]["weight_decay"] == 0.0
    Lamb(groups, lr=0.01)  # accepted as groups


def test_registry_and_closure():
    assert "lamb" in list_optimizers()
    p = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer("lamb", [p], lr=0.1, momentum=0.9, weight_decay=0.0)
    assert isinstance(opt, Lamb) and opt.defaults["eps"] == 1e-6 and opt.defaults["betas"] == (0.9, 0.999)

    def closure():
        opt.zero_grad()
        loss = (p * 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(6.0)
    assert p.detach().norm().item() == pytest.approx(math.sqrt(3) * 0.9, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(lr=0.0), "learning rate"),
        (dict(lr=-1e-3), "learning rate"),
        (dict(lr=float("nan")), "learning rate"),
        (dict(lr=1e-3, betas=(1.0, 0.999)), "betas"),
        (dict(lr=1e-3, betas=(0.9, -0.1)), "betas"),
        (dict(lr=1e-3, betas=(0.9,)), "betas"),
        (dict(lr=1e-3, eps=-1.0), "eps"),
        (dict(lr=1e-3, weight_decay=-0.1), "weight_decay"),
        (dict(lr=1e-3, trust_clip=0.0), "trust_clip"),
        (dict(lr=1e-3, nonfinite="ignore"), "nonfinite"),
    ],
)
def test_bad_hyperparameters(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        Lamb([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_bad_group_hyperparameters_and_registry_lr():
    with pytest.raises(ConfigError, match="betas"):
        Lamb([{"params": [torch.nn.Parameter(torch.ones(2))], "betas": (0.9, 1.5)}], lr=1e-3)
    with pytest.raises(ConfigError, match="learning rate"):
        build_optimizer("lamb", [torch.nn.Parameter(torch.ones(2))], lr=0)


def test_nonfinite_gradients_raise_or_skip():
    p = torch.nn.Parameter(torch.ones(3))
    opt = Lamb([p], lr=0.1)
    p.grad = torch.tensor([1.0, float("nan"), 0.0])
    with pytest.raises(NonFiniteLossError, match="nonfinite='skip'"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3)) and not opt.state[p]

    opt = Lamb([p], lr=0.1, nonfinite="skip")
    p.grad = torch.tensor([1.0, float("inf"), 0.0])
    opt.step()
    assert torch.equal(p.detach(), torch.ones(3)) and opt.skipped_steps == 1 and not opt.state[p]
    p.grad = torch.tensor([1.0, 1.0, 1.0])
    opt.step()
    assert opt.state[p]["step"] == 1 and not torch.equal(p.detach(), torch.ones(3))
