"""AdAdaGrad (arXiv 2402.11215): AdaGradNorm, vectorized per-sample gradients, batch-size tests."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError, DataError, NonFiniteLossError
from lifelong.optim import (
    AdaGradNorm,
    InnerProductTestBatchController,
    NormTestBatchController,
    adadagrad,
    adadagradnorm,
    build_optimizer,
    list_optimizers,
    per_sample_gradients,
)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def _batch(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def _loop_grads(model, x, y):
    """Reference per-sample gradients with a Python loop (test only)."""
    out = {n: [] for n, _ in model.named_parameters()}
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in model.named_parameters():
            out[n].append(p.grad.detach().clone())
    model.zero_grad()
    return {n: torch.stack(v) for n, v in out.items()}


# --- AdaGradNorm ------------------------------------------------------------------------------


def test_adagradnorm_matches_formula():
    g = torch.Generator().manual_seed(0)
    w = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    params = [torch.nn.Parameter(t.clone()) for t in w]
    opt = AdaGradNorm(params, lr=0.3, initial_accumulator_value=0.04, eps=0.0, granularity="global")
    b2 = 0.04
    for _ in range(3):
        grads = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in w]
        b2 += sum(float(gr.pow(2).sum()) for gr in grads)
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
        w = [t - 0.3 * gr / math.sqrt(b2) for t, gr in zip(w, grads)]
        for p, t in zip(params, w):
            assert torch.allclose(p.detach(), t, atol=1e-6, rtol=0)
    assert opt.accumulator.item() == pytest.approx(b2, rel=1e-6)


def test_adagradnorm_rows_match_official_formula():
    """Default granularity "row" (official adagradnorm.py): one accumulator per output row of a weight; the bias
    right after a weight adds that row's squared norm and its own g^2; a lone 1-D parameter is coordinate-wise."""
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b0 = torch.randn(3, generator=g, dtype=torch.float64)
    c0 = torch.randn(5, generator=g, dtype=torch.float64)  # 1-D, follows the bias: no matching weight before it
    k0 = torch.randn(2, 1, 2, 2, generator=g, dtype=torch.float64)  # a conv weight: rows = output channels
    params = [torch.nn.Parameter(t.clone()) for t in (w0, b0, c0, k0)]
    opt = AdaGradNorm(params, lr=0.2, initial_accumulator_value=0.01, eps=0.0)
    assert opt.granularity == "row"
    sw, sb, sc, sk = (torch.full(s, 0.01, dtype=torch.float64) for s in ((3,), (3,), (5,), (2,)))
    w, b, c, k = w0.clone(), b0.clone(), c0.clone(), k0.clone()
    for _ in range(3):
        gw, gb, gc, gk = (torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (w0, b0, c0, k0))
        for p, gr in zip(params, (gw, gb, gc, gk)):
            p.grad = gr.clone()
        opt.step()
        rows = gw.pow(2).sum(1)
        sw += rows
        sb += rows + gb.pow(2)
        sc += gc.pow(2)
        sk += gk.reshape(2, -1).pow(2).sum(1)
        w = w - 0.2 * gw / sw.sqrt()[:, None]
        b = b - 0.2 * gb / sb.sqrt()
        c = c - 0.2 * gc / sc.sqrt()
        k = k - 0.2 * gk / sk.sqrt().view(2, 1, 1, 1)
    for p, t in zip(params, (w, b, c, k)):
        assert torch.allclose(p.detach(), t, atol=1e-6, rtol=0)  # float32 accumulators
    # the global (scalar) version differs from the rows on the same gradients
    q = torch.nn.Parameter(w0.clone())
    r = torch.nn.Parameter(w0.clone())
    grad = torch.randn(3, 4, generator=g, dtype=torch.float64) * torch.tensor(
        [[1.0], [10.0], [0.1]], dtype=torch.float64
    )
    for p, gran in ((q, "row"), (r, "global")):
        p.grad = grad.clone()
        AdaGradNorm([p], lr=0.2, granularity=gran).step()
    assert not torch.allclose(q, r)


def test_adagradnorm_rows_state_dict_round_trip():
    a, b = _mlp(), _mlp(1)
    oa = AdaGradNorm(a.parameters(), lr=0.5)
    x, y = _batch()
    for _ in range(2):
        oa.zero_grad()
        F.cross_entropy(a(x), y).backward()
        oa.step()
    b.load_state_dict(a.state_dict())
    buf = io.BytesIO()
    torch.save(oa.state_dict(), buf)
    buf.seek(0)
    ob = AdaGradNorm(b.parameters(), lr=0.5)
    ob.load_state_dict(torch.load(buf, weights_only=True))
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_adagradnorm_registry_state_dict_and_errors():
    assert "adagradnorm" in list_optimizers()
    a, b = _mlp(), _mlp(1)
    oa = build_optimizer("adagradnorm", a.parameters(), lr=0.5, momentum=0.9)
    assert isinstance(oa, AdaGradNorm) and oa.granularity == "row"
    oa = AdaGradNorm(a.parameters(), lr=0.5, granularity="global")
    x, y = _batch()
    for _ in range(2):
        oa.zero_grad()
        F.cross_entropy(a(x), y).backward()
        oa.step()
    b.load_state_dict(a.state_dict())
    buf = io.BytesIO()
    torch.save(oa.state_dict(), buf)
    buf.seek(0)
    ob = AdaGradNorm(b.parameters(), lr=0.5, granularity="global")
    ob.load_state_dict(torch.load(buf, weights_only=True))
    assert ob.accumulator.item() == oa.accumulator.item()
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    sd = oa.state_dict()
    del sd["accumulator"]
    with pytest.raises(ConfigError, match="accumulator"):
        ob.load_state_dict(sd)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(lr=0.0), "learning rate"),
        (dict(lr=-0.1), "learning rate"),
        (dict(lr=0.1, initial_accumulator_value=0.0), "initial_accumulator_value"),
        (dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
        (dict(lr=0.1, nonfinite="warn"), "nonfinite"),
        (dict(lr=0.1, granularity="layer"), "granularity"),
    ],
)
def test_adagradnorm_bad_input(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        AdaGradNorm([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_adagradnorm_nonfinite_raise_or_skip():
    p = torch.nn.Parameter(torch.ones(2))
    opt = AdaGradNorm([p], lr=0.1)
    p.grad = torch.tensor([float("nan"), 1.0])
    with pytest.raises(NonFiniteLossError, match="nonfinite='skip'"):
        opt.step()
    opt = AdaGradNorm([p], lr=0.1, nonfinite="skip", granularity="global")
    acc = opt.accumulator.item()
    opt.step()
    assert torch.equal(p.detach(), torch.ones(2)) and opt.accumulator.item() == acc and opt.skipped_steps == 1
    opt = AdaGradNorm([p], lr=0.1, nonfinite="skip")
    opt.step()
    assert torch.equal(p.detach(), torch.ones(2)) and "sum" not in opt.state[p] and opt.skipped_steps == 1


# --- per-sample gradients ------------------------------------------------------------------------


def test_per_sample_gradients_match_loop_and_are_vectorized():
    model = _mlp()
    x, y = _batch(10)
    calls = []
    model[0].register_forward_hook(lambda *a: calls.append(1))
    got = per_sample_gradients(model, F.cross_entropy, x, y)
    assert len(calls) == 1  # one batched (vmapped) forward, not one per sample
    ref = _loop_grads(model, x, y)
    assert set(got) == set(ref)
    for n in ref:
        assert got[n].shape == (10, *dict(model.named_parameters())[n].shape)
        assert torch.allclose(got[n], ref[n], atol=1e-6)


def test_per_sample_gradients_skip_frozen_parameters():
    model = _mlp()
    model[0].weight.requires_grad_(False)
    x, y = _batch(4)
    got = per_sample_gradients(model, F.cross_entropy, x, y)
    assert "0.weight" not in got and "0.bias" in got


# --- the tests ---------------------------------------------------------------------------------


def test_norm_test_statistic_by_hand():
    model = _mlp()
    x, y = _batch(12)
    ref = _loop_grads(model, x, y)
    flat = torch.cat([g.reshape(12, -1) for g in ref.values()], 1).double()
    mean = flat.mean(0)
    var_l1 = ((flat - mean) ** 2).sum(0).div(11).sum().item()
    expected = var_l1 / (0.2**2 * mean.pow(2).sum().item())
    ctl = NormTestBatchController(4, 10_000, eta=0.2)
    new = ctl.update(model, F.cross_entropy, x, y)
    assert ctl.last_stats["proposal"] == pytest.approx(expected, rel=1e-4)
    assert new == max(4, min(10_000, math.ceil(expected)))


def test_inner_product_test_statistic_by_hand():
    model = _mlp()
    x, y = _batch(12)
    flat = torch.cat([g.reshape(12, -1) for g in _loop_grads(model, x, y).values()], 1).double()
    mean = flat.mean(0)
    gsq = mean.pow(2).sum()
    a = flat @ mean
    orth = flat - a[:, None] * mean[None, :] / gsq
    b_ip = (a.var(correction=1) / (0.5**2 * gsq**2)).item()
    b_orth = (orth.var(0, correction=1).sum() / (1.0**2 * gsq)).item()
    ctl = InnerProductTestBatchController(2, 10_000, theta=0.5, nu=1.0)
    ctl.update(model, F.cross_entropy, x, y)
    assert ctl.last_stats["proposal"] == pytest.approx(max(b_ip, b_orth), rel=1e-4)
    plain = InnerProductTestBatchController(2, 10_000, augmented=False)
    plain.update(model, F.cross_entropy, x, y)
    assert plain.last_stats["proposal"] == pytest.approx(b_ip, rel=1e-4)


def test_batch_never_shrinks_and_is_capped():
    model = _mlp()
    x, y = _batch(12)
    loose = NormTestBatchController(200, 1000, eta=1e3)  # proposal far below 200
    assert loose.update(model, F.cross_entropy, x, y) == 200
    strict = NormTestBatchController(4, 50, eta=1e-3)  # proposal far above the cap
    assert strict.update(model, F.cross_entropy, x, y) == 50
    assert strict.update(model, F.cross_entropy, x, y) == 50
    assert strict.history == [4, 50, 50]
    coord = NormTestBatchController(4, 10_000, eta=0.5, coordinatewise=True)
    assert coord.update(model, F.cross_entropy, x, y) >= NormTestBatchController(4, 10_000, eta=0.5).update(
        model, F.cross_entropy, x, y
    )


def test_set_grad_equals_ordinary_backward_also_with_test_subset():
    model = _mlp()
    x, y = _batch(16)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    ref = [p.grad.clone() for p in model.parameters()]
    for ctl in (NormTestBatchController(4, 100), NormTestBatchController(4, 100, max_test_samples=5)):
        model.zero_grad()
        ctl.update(model, F.cross_entropy, x, y, set_grad=True)
        for p, r in zip(model.parameters(), ref):
            assert torch.allclose(p.grad, r, atol=1e-6)


def test_controller_state_dict():
    model = _mlp()
    x, y = _batch(12)
    a = NormTestBatchController(4, 64, eta=0.01)
    a.update(model, F.cross_entropy, x, y)
    b = NormTestBatchController(4, 64, eta=0.01)
    b.load_state_dict(a.state_dict())
    assert b.batch_size == a.batch_size and b.history == a.history
    with pytest.raises(ConfigError, match="outside"):
        NormTestBatchController(4, 32).load_state_dict({"batch_size": 64, "history": [4, 64]})


def test_controller_bad_input():
    with pytest.raises(ConfigError, match="initial_batch_size"):
        NormTestBatchController(1, 10)
    with pytest.raises(ConfigError, match="max_batch_size"):
        NormTestBatchController(16, 8)
    with pytest.raises(ConfigError, match="eta"):
        NormTestBatchController(4, 8, eta=0.0)
    with pytest.raises(ConfigError, match="theta"):
        InnerProductTestBatchController(4, 8, theta=-1.0)
    with pytest.raises(ConfigError, match="max_test_samples"):
        NormTestBatchController(4, 8, max_test_samples=1)
    model = _mlp()
    x, y = _batch(4)
    ctl = NormTestBatchController(4, 8)
    with pytest.raises(DataError, match="at least 2"):
        ctl.update(model, F.cross_entropy, x[:1], y[:1])
    with pytest.raises(DataError, match="samples"):
        ctl.update(model, F.cross_entropy, x, y[:3])
    with pytest.raises(NonFiniteLossError):
        ctl.update(model, F.cross_entropy, x * float("nan"), y)
    with pytest.raises(ConfigError, match="unknown batch-size test"):
        adadagradnorm(model, lr=0.1, test="variance")
    with pytest.raises(ConfigError, match="learning rate"):
        adadagrad(model, lr=0.0)


def test_adadagrad_training_loop_grows_batch_and_learns():
    """A short AdAdaGradNorm / AdAdaGrad run: monotone growth, loss goes down."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    for make in (adadagradnorm, adadagrad):
        model = _mlp()
        opt, ctl = make(
            model, lr=0.5 if make is adadagradnorm else 0.1, initial_batch_size=8, max_batch_size=512, eta=0.3
        )
        with torch.no_grad():
            start = F.cross_entropy(model(x), y).item()
        for _ in range(40):
            idx = torch.randperm(512, generator=g)[: ctl.batch_size]
            ctl.update(model, F.cross_entropy, x[idx], y[idx], set_grad=True)
            opt.step()
        with torch.no_grad():
            end = F.cross_entropy(model(x), y).item()
        h = ctl.history
        assert all(b2 >= b1 for b1, b2 in zip(h, h[1:])) and h[-1] > h[0]
        assert end < start
