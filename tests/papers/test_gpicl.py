"""*General-Purpose In-Context Learning by Meta-Learning Transformers* (arXiv 2212.04458): the quick reproduction
runs end to end, the gates judge hand-made results correctly, the controls are judged not held, the lr is picked on
validation prompts and the regimes' samplers are wired as the protocol says."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong.papers import get_paper, paper_settings, reproduce
from lifelong.papers.gpicl import (
    image_splits,
    make_test_prompts,
    pick_lr,
    randomise_context_labels,
    regime_tasks,
    sampler,
    verdict,
)

CFG = {"min_late": 0.4, "min_gain": 0.15, "min_train": 0.8, "max_unseen": 0.3}


@pytest.fixture(scope="module")
def claim():
    return reproduce("gpicl", "quick", sets=["steps=350", "test_prompts=300", "val_prompts=150"])


def test_quick_reproduction_runs_and_controls_fail(claim):
    m = claim.measured
    assert claim.paper == "gpicl" and claim.scale == "quick"
    for name in (
        "untrained model, generalisation gates",
        "16-task model, generalisation gates",
        "fresh-task model with context labels randomised, generalisation gates",
        "fresh-task model, memorisation gates",
    ):
        assert m[f"control held: {name} (must be False)"] is False
    for key in ("unseen_level", "unseen_gain", "pool_train_level", "pool_unseen_low"):
        assert f"{key}/mean" in m and m[f"{key}/n"] == 1
    # the 16-task model has started to memorise its tasks: well above the untrained model on them, not on unseen ones
    assert m["pool on pool tasks acc@16-20"] > m["untrained on pool tasks acc@16-20"] + 0.1
    assert m["pool on pool tasks acc@16-20"] > m["pool on unseen tasks acc@16-20"] + 0.1
    grid = {f"{lr:g}" for lr in paper_settings("gpicl", "quick")["lr_grid"]}
    assert m["fresh lr picked per seed"] in grid and m["pool lr picked per seed"] in grid
    assert len(m["fresh on unseen tasks acc by position (seed 0)"].split()) == 20
    json.dumps(claim.to_dict())
    assert get_paper("3").short_name == "gpicl" and get_paper("gpicl").status == "claim checked"


def test_lr_is_picked_on_validation_prompts():
    """Every grid value is trained and scored on validation prompts; the best one is returned with its model."""
    cfg = paper_settings("gpicl", "quick", sets=["steps=5", "val_prompts=50", "lr_grid=[0.001, 0.003]"])
    images = image_splits(cfg, 0)
    model, lr, scores, _ = pick_lr(cfg, images, "pool", 0)
    assert set(scores) == {0.001, 0.003} and lr == max(scores, key=lambda v: (scores[v], -v))
    assert not model.training


def test_image_splits_are_disjoint_and_held_out():
    cfg = paper_settings("gpicl", "quick")
    s = image_splits(cfg, 0)
    n_train, n_val = len(s["train"][1]), len(s["val"][1])
    assert abs(n_val / (n_train + n_val) - cfg["val_fraction"]) < 0.01
    rows = {tuple(r.tolist()) for r in s["train"][0]}
    assert not any(tuple(r.tolist()) in rows for r in s["val"][0][:50])
    assert abs(float(s["train"][0].mean())) < 1e-4  # standardised with the meta-training images' statistics


def _arm(unseen_late, unseen_early, pool_late):
    return {"unseen": {"late": unseen_late, "early": unseen_early}, "pool": {"late": pool_late, "early": 0.3}}


def _row(fresh, pool, untrained=(0.2, 0.2, 0.2)):
    return {"fresh": _arm(*fresh), "pool": _arm(*pool), "untrained": _arm(*untrained)}


def test_gates_and_controls():
    good = [_row((0.62 + 0.01 * s, 0.31, 0.64), (0.21, 0.2, 0.9 + 0.01 * s)) for s in range(3)]
    v = verdict(good, CFG)
    assert v["held"] and set(v) == {"unseen_level", "unseen_gain", "pool_train_level", "pool_unseen_low", "held"}
    # the controls on the same runs: untrained and 16-task model by the generalisation gates, fresh by memorisation
    assert not verdict(good, CFG, "untrained", None)["held"]
    assert not verdict(good, CFG, "pool", None)["held"]
    assert not verdict(good, CFG, None, "fresh")["held"]
    # high late accuracy that is already there early: no in-context gain, not held
    flat = [_row((0.62 + 0.01 * s, 0.55, 0.64), (0.21, 0.2, 0.9)) for s in range(3)]
    v = verdict(flat, CFG)
    assert v["unseen_level"]["held"] and not v["unseen_gain"]["held"] and not v["held"]
    # a 16-task model that generalises instead of memorising: not held
    general = [_row((0.62, 0.31, 0.64), (0.45 + 0.01 * s, 0.3, 0.9)) for s in range(3)]
    v = verdict(general, CFG)
    assert v["pool_train_level"]["held"] and not v["pool_unseen_low"]["held"] and not v["held"]
    # a 16-task model that has not memorised its tasks
    weak = [_row((0.62, 0.31, 0.64), (0.21, 0.2, 0.7 + 0.01 * s)) for s in range(3)]
    assert not verdict(weak, CFG)["pool_train_level"]["held"]
    # a mean above the bar whose interval reaches below it is not held
    noisy = [_row((late, 0.2, 0.5), (0.2, 0.2, 0.9)) for late in (0.3, 0.5, 0.62)]
    v = verdict(noisy, CFG)
    assert v["unseen_level"]["mean"] > 0 and not v["unseen_level"]["held"]


def test_full_spec_is_the_catalogue_setting():
    full = paper_settings("gpicl", "full")
    assert full["d_proj"] == 32 and full["ways"] == 5 and full["n_points"] == 20 and full["pool_tasks"] == 16
    assert full["model"] == {"d_model": 64, "layers": 2, "heads": 4} and len(full["seeds"]) >= 3
    assert full["window_late"] == [16, 20] and full["window_early"] == [1, 4] and len(full["lr_grid"]) >= 2
    assert full["bias_fraction"] == 0.9 and full["no_bias_ablation"] is True


def _class_inputs():
    """Images whose input is the one-hot of its class, so a projected point is its class's column of ``A``."""
    y = torch.arange(400) % 10
    return torch.eye(10)[y], y


def test_regime_samplers_are_wired_as_the_protocol_says():
    """Fresh regime: task_id -1, a different projection per prompt, round(0.9 * batch) biased prompts on one fixed
    permutation. Pool test prompts: the seed's pool tasks with their own permutations, no bias. Seeds differ in
    pool and fixed permutation."""
    cfg = paper_settings("gpicl", "quick", sets=["d_proj=10", "test_prompts=64"])
    images = _class_inputs()
    fresh = sampler(cfg, images, regime_tasks(cfg, "fresh"), cfg["bias_fraction"], seed=3)
    p = fresh.sample(64, torch.Generator().manual_seed(1))
    assert bool((p.extra["task_id"] == -1).all()) and int(p.extra["biased"].sum()) == round(0.9 * 64)
    for b in range(0, 63, 7):  # two prompts never share a projected point: their projections differ
        assert float(torch.cdist(p.xs[b], p.xs[b + 1]).min()) > 1e-3
    for b in range(3):  # 5-way prompts: the points of one label are one class (here: one projected input)
        for v in p.ys[b].unique():
            pts = p.xs[b][p.ys[b] == v]
            assert torch.allclose(pts, pts[:1].expand_as(pts))
    pool_prompts = make_test_prompts(cfg, {"test": images}, seed=3)["pool"]
    assert int(pool_prompts.extra["biased"].sum()) == 0
    pool = sampler(cfg, images, cfg["pool_tasks"], 0.0, seed=3)
    tid = pool_prompts.extra["task_id"]
    assert bool(((tid >= 0) & (tid < cfg["pool_tasks"])).all()) and tid.unique().numel() > 1
    for b in range(16):
        a, perm = pool._task(int(tid[b]))
        cls = torch.cdist(pool_prompts.xs[b], a.T).argmin(-1)  # class of every point under its task's projection
        assert torch.equal(cls, perm.argsort()[: cfg["ways"]][pool_prompts.ys[b]])
    other = sampler(cfg, images, cfg["pool_tasks"], 0.0, seed=4)
    assert not torch.allclose(other._task(0)[0], pool._task(0)[0])
    assert not torch.equal(other._fixed_perm, fresh._fixed_perm)


def test_randomised_context_labels_keep_inputs_and_late_labels():
    cfg = paper_settings("gpicl", "quick", sets=["d_proj=10"])
    p = sampler(cfg, _class_inputs(), None, 0.0, seed=0).sample(200, torch.Generator().manual_seed(2))
    q = randomise_context_labels(cfg, p, 0)
    k = cfg["window_late"][0] - 1
    assert torch.equal(q.xs, p.xs) and torch.equal(q.ys[:, k:], p.ys[:, k:])
    assert float((q.ys[:, :k] != p.ys[:, :k]).float().mean()) > 0.5 and q.ys.max() < cfg["ways"]
