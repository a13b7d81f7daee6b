"""OnPro (Wei et al., ICCV 2023): shared losses, APF pair sampling, and the quick reproduction."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.data.augment import augment
from lifelong.errors import ConfigError, DataError
from lifelong.heads.losses import (
    class_means,
    mixup_cross_entropy,
    prototype_contrast_loss,
    soft_cross_entropy,
    supcon_loss,
)
from lifelong.methods.config import build_config
from lifelong.methods.onpro import OnPro, OnProConfig


def _supcon_reference(z, labels, t):
    """SupCon written as the paper's sum, one anchor at a time."""
    n = len(z)
    total, anchors = 0.0, 0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        pos = [p for p in others if labels[p] == labels[i]]
        if not pos:
            continue
        denom = torch.logsumexp(torch.stack([z[i] @ z[a] / t for a in others]), 0)
        total += -sum((z[i] @ z[p] / t - denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_supcon_matches_the_per_anchor_definition():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(7, 5, generator=g), dim=1)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # classes 2 and 3 have no positive
    assert torch.allclose(supcon_loss(z, y, 0.2), _supcon_reference(z, y, 0.2), atol=1e-5)
    assert torch.allclose(
        supcon_loss(z, y, 0.2, base_temperature=0.07), _supcon_reference(z, y, 0.2) * 0.2 / 0.07, atol=1e-5
    )
    assert supcon_loss(z[:2], torch.tensor([0, 1]), 0.1) == 0  # no anchor with a positive
    with pytest.raises(DataError):
        supcon_loss(z, y[:3])


def test_prototype_contrast_rewards_consistent_and_separated_prototypes():
    eye = torch.eye(4)
    aligned = prototype_contrast_loss(eye, eye.clone(), 0.5)
    collapsed = prototype_contrast_loss(torch.ones(4, 4), torch.ones(4, 4), 0.5)
    swapped = prototype_contrast_loss(eye, eye[[1, 0, 3, 2]], 0.5)
    assert aligned < collapsed < swapped
    assert prototype_contrast_loss(eye[:1], eye[:1]) == 0


def test_class_means_and_mixup_and_soft_ce():
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    means, present = class_means(z, torch.tensor([0, 0, 2]), 4)
    assert torch.equal(present, torch.tensor([True, False, True, False]))
    assert torch.allclose(means[0], torch.tensor([2.0, 0.0])) and torch.allclose(means[2], torch.tensor([0.0, 2.0]))
    logits = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 0, 1])
    assert torch.allclose(mixup_cross_entropy(logits, y, y, torch.rand(5)), F.cross_entropy(logits, y))
    # soft CE from a one-hot-like teacher approaches the hard CE; equal logits give a zero gradient
    s = logits.clone().requires_grad_()
    soft_cross_entropy(s, logits).backward()
    assert s.grad.abs().max() < 1e-6


def test_augment_is_seeded_and_shifts_images():
    x = torch.zeros(3, 1, 6, 6)
    x[:, 0, 2, 2] = 1.0
    a = augment(x, torch.Generator().manual_seed(1), shift=1)
    b = augment(x, torch.Generator().manual_seed(1), shift=1)
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.equal(a.sum((1, 2, 3)), torch.ones(3))  # the pixel moved by at most 1, never lost
    rows, cols = torch.nonzero(a[:, 0], as_tuple=True)[1:]
    assert ((rows - 2).abs() <= 1).all() and ((cols - 2).abs() <= 1).all()
    v = torch.randn(100, 16)
    noisy = augment(v, torch.Generator().manual_seed(0), noise=0.1)
    rel = (noisy - v).norm(dim=1) / v.norm(dim=1)
    assert 0.05 < rel.mean() < 0.15  # noise scaled to each example's RMS
    with pytest.raises(DataError):
        augment(v, torch.Generator(), noise=-1)


def _filled_learner(mixup_base_rate=0.0):
    cfg = build_config(OnProConfig, {"buffer_size": 80, "mixup_base_rate": mixup_base_rate, "mixup_p": 1.0})
    learner = OnPro(cfg, seed=0)
    learner.prepare((8,), 4)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(20)
    learner.buffer.add(g, x=torch.randn(80, 8, generator=g) + y[:, None].float(), y=y)
    return learner


def test_apf_samples_the_closest_class_pair_most():
    learner = _filled_learner()
    # classes 0 and 1 are close, 2 and 3 far from everything
    means = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [0.0, 3.0]])
    present = torch.ones(4, dtype=torch.bool)
    mem = learner.buffer.sample(64, learner.generator)
    x, ya, yb, lam = learner._feedback(mem["x"], mem["y"], means, present)
    assert x.shape == (64, 8) and len(ya) == len(yb) == len(lam) == 64
    assert learner.top_apf_pair() == (0, 1)
    assert learner.apf_pair_counts[0, 1] > 0.9 * learner.apf_pair_counts.sum()
    assert ((lam >= 0) & (lam <= 1)).all()
    assert set(ya.tolist()) | set(yb.tolist()) <= {0, 1, 2, 3}
    assert (ya < yb).all()  # APF pairs are distinct classes


def test_apf_base_share_uses_random_mixup_only():
    learner = _filled_learner(mixup_base_rate=1.0)
    mem = learner.buffer.sample(32, learner.generator)
    learner._feedback(mem["x"], mem["y"], torch.randn(4, 2), torch.ones(4, dtype=torch.bool))
    assert learner.apf_pair_counts.sum() == 0


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="mixup_p"):
        build_config(OnProConfig, {"mixup_p": 1.5})
    with pytest.raises(ConfigError):
        build_config(OnProConfig, {"buffer_size": 0})


def test_quick_reproduction_onpro_learns_on_par_with_er():
    from lifelong.papers import reproduce as run
    from lifelong.papers.onpro import reproduce

    claim = reproduce("quick")
    m = claim.measured
    assert claim.paper == "onpro" and claim.scale == "quick"
    # OnPro's edge over ER at this scale is within seed and CPU-kernel noise: onpro - best ER over seeds 0-4 x
    # ATEN_CPU_CAPABILITY=default/avx2/avx512 ranged -0.023..+0.051 (seed 0: +0.028/+0.045/+0.051, OnPro
    # itself 0.799/0.814/0.817), so "OnPro > ER" held by luck. What holds on every CPU: OnPro learns the
    # stream (0.73-0.82 over those runs; chance 0.1, forgetting every earlier experience gives about 0.2)
    # and stays within 5 points of the better ER. Whether the claim's +3 points held is claim.held.
    best_er = max(m["final_acc/er"], m["final_acc/er_replay64"])
    assert m["final_acc/onpro"] > 0.6 and m["final_acc/onpro"] >= best_er - 0.05
    assert m["apf_top_pair_rank_per_seed"] not in ("", "None")
    # the verdict reads the numbers: a gain over ER above 100 points cannot be met
    impossible = run("onpro", sets=("min_gain=1.01",))
    assert impossible.held is False and "accuracy part NOT held" in impossible.notes
