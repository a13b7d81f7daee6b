"""Mamba-FSCIL (Mamba-FSCIL): selective scan, dual-branch neck, class-sensitive losses, FSCIL behaviour."""

import pytest
import torch

from lifelong.data import load_digits
from lifelong.errors import ConfigError, DataError
from lifelong.layers.selective_scan import SelectiveSSMBlock, selective_scan
from lifelong.methods import make_learner
from lifelong.methods.mamba_fscil import separation_loss
from lifelong.scenarios.fewshot import few_shot_incremental

QUICK = {"tokens": 4, "d_state": 4, "base_epochs": 15, "batch_size": 32, "inc_steps": 60}


def test_selective_scan_matches_naive_recurrence():
    g = torch.Generator().manual_seed(0)
    n, L, d, N = 3, 5, 4, 2
    u, dt = torch.randn(n, L, d, generator=g), torch.rand(n, L, d, generator=g)
    A, B, C, D = (
        -torch.rand(d, N, generator=g),
        torch.randn(n, L, N, generator=g),
        torch.randn(n, L, N, generator=g),
        torch.randn(d, generator=g),
    )
    y = selective_scan(u, dt, A, B, C, D)
    for i in range(n):
        h = torch.zeros(d, N)
        for t in range(L):
            h = torch.exp(dt[i, t, :, None] * A) * h + dt[i, t, :, None] * B[i, t][None, :] * u[i, t, :, None]
            ref = (h * C[i, t][None, :]).sum(1) + D * u[i, t]
            assert torch.allclose(y[i, t], ref, atol=1e-5)


def test_selectivity_and_zero_start():
    torch.manual_seed(0)
    block = SelectiveSSMBlock(6, 8, 4, zero_out=True)
    out, params = block(torch.randn(2, 3, 6))
    assert torch.equal(out, torch.zeros_like(out))
    gated = SelectiveSSMBlock(6, 6, 4, out_proj=False, zero_gate=True)  # Mamba-FSCIL's dynamic branch start
    out, _ = gated(torch.randn(2, 3, 6))
    assert out.shape == (2, 3, 6) and torch.equal(out, torch.zeros_like(out))
    with pytest.raises(DataError, match="d_inner == d_model"):
        SelectiveSSMBlock(6, 8, 4, out_proj=False)
    assert not torch.allclose(params["dt"][0], params["dt"][1])  # step sizes depend on the input
    assert params["B"].shape == params["C"].shape == (2, 3, 4)


def test_separation_loss_zero_for_orthogonal_means_and_bad_config():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert separation_loss(p, torch.tensor([True, True, False])).item() == pytest.approx(0.0)
    assert separation_loss(p[[0, 0, 0]], torch.tensor([True, True, False])).item() == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        make_learner("mamba-fscil", {"tokens": 0})
    with pytest.raises(ConfigError, match="optimizer"):
        make_learner("mamba-fscil", {"optimizer": "rmsprop"})


def _run(stream, **over):
    learner = make_learner("mamba-fscil", {**QUICK, **over}, seed=0)
    learner.learn(stream[0])
    base = {k: v.clone() for k, v in learner.neck.base.state_dict().items()}
    x0, y0 = stream[0].test_tensors()
    acc0 = (learner.predict(x0).argmax(1) == y0).float().mean().item()
    for e in list(stream)[1:]:
        learner.learn(e)
    acc_last = (learner.predict(x0).argmax(1) == y0).float().mean().item()
    xs, ys = zip(*(e.test_tensors() for e in stream))
    acc_all = (learner.predict(torch.cat(xs)).argmax(1) == torch.cat(ys)).float().mean().item()
    with torch.no_grad():
        _, d, _ = learner.neck(x0.reshape(len(x0), -1).float())
    return learner, base, acc0, acc_last, acc_all, d.norm(dim=1).mean().item()


def test_fscil_digits_static_branch_frozen_and_suppression_keeps_base():
    stream = few_shot_incremental(load_digits(), base_classes=5, ways=1, shots=5, sessions=3, seed=0)
    learner, base, acc0, acc_last, acc_all, d_supp = _run(stream)
    assert all(torch.equal(base[k], v) for k, v in learner.neck.base.state_dict().items())
    assert acc0 > 0.8 and acc_all > 0.5  # 8 classes: chance is 0.125
    assert acc0 - acc_last <= 0.1
    *_, d_free = _run(stream, supp_weight=0.0, sep_weight=0.0)
    assert d_supp < d_free  # suppression shrinks the dynamic branch's response to base-class inputs


def test_causal_conv_matches_conv1d_and_scan_is_causal():
    torch.manual_seed(0)
    block = SelectiveSSMBlock(6, 6, 4, out_proj=False)
    x = torch.randn(2, 5, 6)
    out, _ = block(x)
    changed = x.clone()
    changed[:, 3:] += 1.0  # a later token cannot change earlier outputs (causal conv + forward scan)
    out2, _ = block(changed)
    assert torch.allclose(out[:, :3], out2[:, :3], atol=1e-6) and not torch.allclose(out[:, 3:], out2[:, 3:])
    v = block.in_proj(x).chunk(2, -1)[0]
    ref = block.conv(v.transpose(1, 2))[..., :5].transpose(1, 2)
    L, w = 5, block.conv.weight[:, 0]
    mine = block.conv.bias + sum(torch.nn.functional.pad(v, (0, 0, 3, 0))[:, k : k + L] * w[:, k] for k in range(4))
    assert torch.allclose(ref, mine, atol=1e-6)


def test_base_memory_class_means_or_examples():
    stream = few_shot_incremental(load_digits(), base_classes=3, ways=1, shots=5, sessions=1, seed=0)
    x, y = stream[0].train_tensors()
    f = x.reshape(len(x), -1).float()
    quick = {"tokens": 2, "d_state": 2, "base_epochs": 1, "inc_steps": 0}
    means = make_learner("mamba-fscil", {**quick, "base_memory": 0}, seed=0)
    means.learn(stream[0])
    assert means.mem_y.tolist() == sorted(y.unique().tolist())
    assert torch.allclose(means.mem_x[0], f[y == means.mem_y[0]].mean(0), atol=1e-6)
    examples = make_learner("mamba-fscil", {**quick, "base_memory": 4}, seed=0)
    examples.learn(stream[0])
    assert sorted(set(torch.bincount(examples.mem_y)[examples.mem_y.unique()].tolist())) == [4]
    examples.learn(stream[1])  # novel shots are kept whole
    assert (examples.mem_y == stream[1].classes[0]).sum().item() == 5


def test_separation_reads_both_scan_directions():
    from lifelong.methods.mamba_fscil import DualSSMNeck

    torch.manual_seed(0)
    neck = DualSSMNeck(8, tokens=4, mid=4, d_state=3)
    with torch.no_grad():  # open the dynamic branch's gate so its scan parameters are all in play
        neck.inc.block.in_proj.weight.normal_()
    f = torch.randn(6, 8)
    _, _, params = neck(f)
    dt_rank = neck.inc.block.dt_rank
    assert params["dt"].shape == (6, 2, 4, dt_rank) and params["B"].shape == (6, 2, 4, 3)
    # the backward scan's parameters differ from the forward scan's (the causal conv runs the other way)
    assert not torch.allclose(params["B"][:, 0], params["B"][:, 1])
    is_base = torch.tensor([True, True, True, False, False, False])
    both = separation_loss(params["B"], is_base)
    fwd = separation_loss(params["B"][:, :1], is_base)
    assert not torch.isclose(both, fwd)
    # the incremental loss reads both directions by default, the forward scan alone with sep_directions="forward"
    losses = {}
    for dirs in ("both", "forward"):
        cfg = {"tokens": 4, "d_state": 3, "mixup_prob": 0.0, "supp_weight": 0.0, "sep_weight": 1.0}
        learner = make_learner("mamba-fscil", {**cfg, "sep_directions": dirs}, seed=0)
        learner.prepare((8,), 4)
        learner.neck.load_state_dict(neck.state_dict())
        learner.base_mask[:2] = True
        losses[dirs] = learner._inc_loss(f, torch.tensor([0, 1, 0, 2, 3, 2])).item()
    assert losses["both"] != pytest.approx(losses["forward"], abs=1e-6)
    with pytest.raises(ConfigError, match="sep_directions"):
        make_learner("mamba-fscil", {"sep_directions": "up"})
