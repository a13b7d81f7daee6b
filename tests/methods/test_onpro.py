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


def test_quick_reproduction_verdict_follows_the_paired_criterion():
    from lifelong.papers.onpro import reproduce

    claim = reproduce("quick")
    m = claim.measured
    assert claim.paper == "onpro" and claim.scale == "quick"
    assert "paired" in claim.criterion and "interval" in claim.criterion
    best_er = max(m["final_acc/er"], m["final_acc/er_replay64"])
    assert abs(m["onpro_minus_best_er"] - (m["final_acc/onpro"] - best_er)) <= 2e-4
    # OnPro's accuracy depends on which vector kernels torch dispatches to (0.67 with this CPU's AVX-512, 0.60
    # with AVX2, 0.54 with ATEN_CPU_CAPABILITY=default; ER's rows are identical under all three), so only what
    # holds under every kernel is asserted: OnPro learns the digits (chance 0.1) but, one short pass at this
    # scale, stays clearly below the better ER (-16 to -29 points): the accuracy part and the claim are not held
    assert m["final_acc/onpro"] > 0.45 and m["onpro_minus_best_er"] < -0.05
    assert claim.held is False and "accuracy part NOT held" in claim.notes
    # APF's effect: the pair it mixes most in the last experience is among the 3 most-confused pairs of the
    # final confusion matrix (rank 1 of 45 under the default and AVX2 kernels and on AMD AVX-512, rank 3 on an
    # Intel AVX-512 + AMX machine; a sampler that mixes the farthest pairs gives rank 32, see the fake runs)
    assert int(m["apf_top_pair_rank_per_seed"]) <= 3 and m["apf_top_pair_in_top3_seeds"] == "1/1"


def _fake_comparison(gain, ranks):
    """A stand-in for ``run_comparison``: ER rows 0.7 + noise per seed, OnPro ``gain`` more, APF ``ranks``."""

    def run_comparison(data, seeds, methods, tasks=5, batch_size=10):
        er = [0.7 + 0.01 * ((s * 7919) % 5) for s in seeds]
        acc = {"er": er, "er_replay64": [a - 0.01 for a in er], "onpro": [a + gain for a in er]}
        apf = [
            {"seed": s, "top_pair": [0, 1], "rank": r, "rank_whole_run": r, "pair_share": 0.5}
            for s, r in zip(seeds, ranks)
        ]
        return {"accuracy": {k: v for k, v in acc.items() if k in methods}, "apf": apf, "seconds": {}}

    return run_comparison


@pytest.mark.parametrize(
    ("gain", "ranks", "held_acc", "held"),
    [
        (0.05, [1, 2, 3, 9], True, True),  # +5 points at every seed, APF's pair in the top 3 at 3 of 4 seeds
        (0.0, [1, 1, 1, 1], False, False),  # a tie is not held
        (0.02, [1, 1, 1, 1], False, False),  # below the 3-point margin
        (0.05, [1, 2, 9, 9], True, False),  # APF's pair in the top 3 at only half the seeds: no majority
    ],
)
def test_verdict_on_known_cases(monkeypatch, gain, ranks, held_acc, held):
    import lifelong.papers.onpro as paper
    from lifelong.papers.spec import load_spec

    monkeypatch.setattr(paper, "run_comparison", _fake_comparison(gain, ranks))
    claim = paper.check(load_spec("onpro", "quick", sets=("seeds=0,1,2,3",)), "quick")
    assert claim.measured["onpro_minus_best_er"] == pytest.approx(gain, abs=1e-4)
    assert claim.held is held
    assert ("accuracy part held" if held_acc else "accuracy part NOT held") in claim.notes


def test_every_row_trains_with_the_same_optimizer():
    # ER must not differ from OnPro in optimizer resets or weight decay (the official code's single Adam)
    from lifelong.papers.onpro import methods_from
    from lifelong.papers.spec import load_spec

    for scale in ("quick", "full"):
        rows = methods_from(load_spec("onpro", scale))
        cfgs = [build_config(cls.config_class, cfg) for cls, cfg in rows.values()]
        assert {(c.optimizer, c.reset_optimizer, c.weight_decay) for c in cfgs} == {("adam", False, 1e-4)}, scale
    grid = load_spec("onpro", "full")["lr_grid"]
    assert min(grid) <= 5e-4 and max(grid) >= 3e-2  # the earlier picks (1e-3, 3e-3) are interior


def test_ocm_rotations_are_the_16_official_transforms():
    from lifelong.data.augment import ocm_rotations

    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    r = ocm_rotations(x)
    assert r.shape == (32, 1, 4, 4)
    assert torch.equal(r[:2], x)  # copy 0: the batch itself
    left_rot = torch.cat([x[..., :2].flip(2, 3), x[..., 2:]], 3)
    assert torch.equal(r[2:4], left_rot)  # copy 1: left half rotated by 180 degrees
    assert torch.equal(r[8:10], torch.rot90(x, 2, (2, 3)))  # copy 4: the batch rotated by 180 degrees
    assert torch.equal(r[16:18], torch.rot90(x, 1, (2, 3)))  # copy 8: rotated by 90 degrees
    assert len({tuple(r[2 * i].flatten().tolist()) for i in range(16)}) == 16  # 16 distinct views
    assert torch.equal(ocm_rotations(x, 1), x) and ocm_rotations(x, 4).shape == (8, 1, 4, 4)
    with pytest.raises(DataError):
        ocm_rotations(torch.zeros(2, 1, 4, 6))


def _nt_xent_reference(sim, labels, t, exclude_self, instance_term):
    """OCM's supervised NT-Xent written row by row."""
    n = len(sim)
    lab = labels.repeat(2)
    total = 0.0
    for i in range(n):
        logits = (sim[i] - sim[i].max()) / t
        e = logits.exp()
        if exclude_self:
            e = e.clone()
            e[i] = 0
        nll = -torch.log(e / (e.sum() + 1e-8) + 1e-8)
        same = lab == lab[i]
        total = total + (nll[same].sum() / same.sum()) * (2 if exclude_self else 1)
        if instance_term:
            total = total + nll[(i + n // 2) % n]
    return total / n


def test_supervised_nt_xent_matches_the_row_by_row_definition():
    from lifelong.heads.losses import ocm_similarity, supervised_nt_xent

    g = torch.Generator().manual_seed(0)
    p, f = torch.randn(8, 4, generator=g), torch.randn(8, 6, generator=g)
    sim = ocm_similarity(p, f, 1, 0.5)
    pn, fn = F.normalize(p, dim=1), F.normalize(f, dim=1)[:, 1:5]
    assert torch.allclose(sim, 0.5 * (pn @ fn.T + pn @ pn.T))
    y = torch.tensor([0, 0, 1, 2])
    for ex, inst in ((True, True), (False, False)):
        got = supervised_nt_xent(sim, y, 0.07, exclude_self=ex, instance_term=inst)
        assert torch.allclose(got, _nt_xent_reference(sim, y, 0.07, ex, inst), atol=1e-4)
    with pytest.raises(DataError):
        ocm_similarity(p, f, 3)


def test_apf_pair_counts_round_and_one_mixup_coin_per_pair():
    learner = _filled_learner()
    learner.config.mixup_p = 0.5
    prob = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.03, 0.02])
    counts = learner._pair_counts(prob, 20)
    assert int(counts.sum()) == 20 and (counts - (prob * 20)).abs().max() <= 1.0
    means = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [0.0, 1.5]])
    mixed_pairs = unmixed_pairs = 0
    for _ in range(20):
        mem = learner.buffer.sample(32, learner.generator)
        _, ya, yb, lam = learner._feedback(mem["x"], mem["y"], means, torch.ones(4, dtype=torch.bool))
        for a, b in {(int(p), int(q)) for p, q in zip(ya, yb)}:
            lam_pair = lam[(ya == a) & (yb == b)]
            assert (lam_pair == 0).all() or (lam_pair > 0).all()  # one coin for the whole pair
            mixed_pairs += bool((lam_pair > 0).all())
            unmixed_pairs += bool((lam_pair == 0).all())
    assert mixed_pairs > 0 and unmixed_pairs > 0
