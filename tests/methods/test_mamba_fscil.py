"""Mamba-FSCIL (seed paper 50): selective scan, dual-branch neck, class-sensitive losses, FSCIL behaviour."""

import pytest
import torch

from lifelong.data import load_digits
from lifelong.errors import ConfigError
from lifelong.heads.selective_scan import SelectiveSSMBlock, selective_scan
from lifelong.methods import make_learner
from lifelong.methods.mamba_fscil import separation_loss
from lifelong.scenarios.fewshot import few_shot_incremental

QUICK = {"tokens": 4, "d_inner": 16, "d_state": 4, "base_epochs": 15, "batch_size": 64, "lr": 0.01,
         "inc_steps": 30, "inc_lr": 0.01}


def test_selective_scan_matches_naive_recurrence():
    g = torch.Generator().manual_seed(0)
    n, L, d, N = 3, 5, 4, 2
    u, dt = torch.randn(n, L, d, generator=g), torch.rand(n, L, d, generator=g)
    A, B, C, D = -torch.rand(d, N, generator=g), torch.randn(n, L, N, generator=g), torch.randn(n, L, N,
                                                                                                    generator=g), \
        torch.randn(d, generator=g)
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
    assert torch.equal(out, torch.zeros_like(out))  # the dynamic branch starts adding nothing
    assert not torch.allclose(params["dt"][0], params["dt"][1])  # step sizes depend on the input
    assert params["B"].shape == params["C"].shape == (2, 3, 4)


def test_separation_loss_zero_for_orthogonal_means_and_bad_config():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert separation_loss(p, torch.tensor([True, True, False])).item() == pytest.approx(0.0)
    assert separation_loss(p[[0, 0, 0]], torch.tensor([True, True, False])).item() == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        make_learner("mamba-fscil", {"tokens": 0})


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
    learner, base, acc0, acc_last, acc_all, d_supp = _run(stream, supp_weight=50.0)
    assert all(torch.equal(base[k], v) for k, v in learner.neck.base.state_dict().items())
    assert acc0 > 0.8 and acc_all > 0.5  # 8 classes: chance is 0.125
    assert acc0 - acc_last <= 0.1
    *_, d_free = _run(stream, supp_weight=0.0, sep_weight=0.0)
    assert d_supp < d_free  # suppression shrinks the dynamic branch's response to base-class inputs
