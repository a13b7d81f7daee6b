"""The bursty / Zipfian in-context classification sampler (arXiv 2312.03002): its statistics per mode."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.incontext.tasks.bursty import BurstyClassification, zipf_probabilities


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_bursty_prompts_hold_b_copies_of_each_class_and_the_querys_class():
    s = BurstyClassification(num_classes=64, num_labels=16, dim=8, context=8, burstiness=4)
    p = s.sample(500, _g())
    assert p.xs.shape == (500, 9, 8) and p.ys.shape == (500, 9) and p.kind == "classes" and p.num_labels == 16
    ctx = p.extra["classes"][:, :-1]
    counts = torch.stack([(ctx == ctx[:, i : i + 1]).sum(1) for i in range(8)], 1)
    assert (counts == 4).all()  # every context class appears exactly B times
    assert p.extra["query_in_context"].all()
    assert (p.ys == s.labels[p.extra["classes"]]).all()  # training labels are the classes' fixed labels
    assert p.extra["loss_mask"][:, -1].all() and not p.extra["loss_mask"][:, :-1].any()


def test_burstiness_zero_draws_classes_iid():
    s = BurstyClassification(num_classes=128, num_labels=16, dim=8, context=8, burstiness=0)
    p = s.sample(4000, _g())
    expected = 1 - (1 - 1 / 128) ** 8  # the query's class is in context only by chance
    assert abs(p.extra["query_in_context"].float().mean().item() - expected) < 0.02


def test_zipf_frequencies_follow_the_rank_law():
    alpha, k = 1.0, 50
    s = BurstyClassification(num_classes=k, num_labels=8, dim=4, context=8, burstiness=0, alpha=alpha)
    counts = torch.bincount(s.sample(20000, _g(1)).extra["classes"].flatten(), minlength=k).float()
    freq = counts / counts.sum()
    p = zipf_probabilities(k, alpha).float()
    assert torch.allclose(freq[:5], p[:5], atol=0.01)
    # rank 1 is about twice rank 2 and ten times rank 10 under alpha = 1
    assert abs(freq[0] / freq[1] - 2) < 0.25 and abs(freq[0] / freq[9] - 10) < 2.5
    assert torch.allclose(zipf_probabilities(5, 0.0), torch.full((5,), 0.2, dtype=torch.float64))


def test_icl_prompts_use_novel_classes_with_random_labels():
    s = BurstyClassification(num_classes=32, num_labels=16, dim=16, context=8, burstiness=4, eps=0.0)
    p = s.with_mode("icl").sample(300, _g(2))
    assert (p.extra["classes"] >= 32).all() and p.extra["novel"].all()  # never a trained class
    # items are novel means: none equals a trained class mean (eps = 0 would reproduce a trained mean exactly)
    d = torch.cdist(p.xs.reshape(-1, 16), s.means)
    assert d.min() > 1e-3
    # labels are consistent within a prompt (the query's label is its class's label in context)
    c, y = p.extra["classes"], p.ys
    same = c[:, :, None] == c[:, None, :]
    assert ((y[:, :, None] == y[:, None, :]) | ~same).all()
    # ... distinct across the classes of one prompt, and spread over all labels
    assert ((y[:, :, None] != y[:, None, :]) | same).all()
    assert torch.unique(y).numel() == 16


def test_ic2_swaps_every_class_label_and_iwl_hides_the_querys_class():
    s = BurstyClassification(num_classes=64, num_labels=16, dim=8, context=8, burstiness=4)
    p = s.with_mode("ic2").sample(400, _g(3))
    assert (p.extra["classes"] < 64).all() and (p.ys != s.labels[p.extra["classes"]]).all()
    q = s.with_mode("iwl").sample(400, _g(4))
    assert not q.extra["query_in_context"].any()
    assert (q.ys == s.labels[q.extra["classes"]]).all()


def test_items_are_noisy_unit_scale_cluster_members():
    s = BurstyClassification(num_classes=16, num_labels=8, dim=64, context=8, burstiness=4, eps=0.1)
    p = s.sample(200, _g(5))
    own = s.means[p.extra["classes"]] / math.sqrt(1 + 0.01)
    assert ((p.xs - own).norm(dim=-1) < 0.25).all()  # within eps of the class mean
    assert abs(p.xs.norm(dim=-1).mean().item() - 1.0) < 0.1


def test_world_is_fixed_by_seed_and_prompts_by_generator():
    a, b = BurstyClassification(seed=3), BurstyClassification(seed=3)
    assert torch.equal(a.means, b.means) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.sample(8, _g(9)).xs, b.sample(8, _g(9)).xs)
    assert not torch.equal(BurstyClassification(seed=4).means, a.means)
    assert torch.bincount(a.labels).min() == torch.bincount(a.labels).max()  # labels balanced over classes


@pytest.mark.parametrize(
    "kwargs",
    [{"burstiness": 3}, {"mode": "nope"}, {"eval_burstiness": 0}, {"p_bursty": 1.5}, {"num_labels": 1}],
)
def test_bad_settings_stop_with_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        BurstyClassification(**kwargs)
