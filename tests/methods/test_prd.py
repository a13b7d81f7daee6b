"""PRD (Asadi et al., ICML 2023): prototypes, relation distillation, no stored data, quick reproduction."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.methods.config import build_config
from lifelong.methods.prd import PRD, PRDConfig
from lifelong.papers.prd import state_numel
from lifelong.scenarios import class_incremental, task_incremental


def _learner(**overrides):
    cfg = {"epochs": 2, "batch_size": 32, "lr": 0.05, **overrides}
    return PRD(build_config(PRDConfig, cfg), seed=0)


@pytest.fixture
def stream():
    return class_incremental(make_blobs(num_classes=6, per_class=30, dim=8, seed=1), tasks=3, seed=0)


def test_predict_is_cosine_to_seen_prototypes(stream):
    learner = _learner()
    learner.learn(stream[0])
    x, _ = stream[0].test_tensors()
    scores = learner.predict(x)
    with torch.no_grad():
        expected = F.normalize(learner.model.features(x), dim=1) @ F.normalize(learner.model.prototypes, dim=1).T
    assert scores.shape == (len(x), 2)
    assert torch.allclose(scores, expected[:, :2], atol=1e-6)
    assert (scores <= 1 + 1e-6).all() and (scores >= -1 - 1e-6).all()


def test_distillation_has_no_gradient_right_after_the_snapshot(stream):
    learner = _learner()
    learner.learn(stream[0])
    assert learner.groups == [[0, 1]] and learner.teacher is not None
    x, _ = stream[1].train_tensors()
    views = torch.cat([x, x])
    learner.model.zero_grad(set_to_none=True)
    h = learner.model.features(views)
    loss = learner.relation_distillation(h, views)
    loss.backward()
    # student == teacher: softmax(s_new) == softmax(s_old), so the gradient vanishes
    assert learner.model.prototypes.grad.abs().max() < 1e-6
    assert all(p.grad is None or p.grad.abs().max() < 1e-6 for p in learner.model.backbone.parameters())


def test_distillation_moves_old_prototypes_and_no_distill_leaves_them(stream):
    moved = {}
    for coef in (4.0, 0.0):
        learner = _learner(distill_coef=coef)
        learner.learn(stream[0])
        before = learner.model.prototypes[:2].detach().clone()
        learner.learn(stream[1])
        moved[coef] = float((learner.model.prototypes[:2].detach() - before).norm())
    assert moved[0.0] == 0.0  # only L_p (current classes) and L_d touch prototypes
    assert moved[4.0] > 0.0


def test_state_does_not_grow_with_data(stream):
    learner = _learner()
    sizes = []
    for e in stream:
        learner.learn(e)
        sizes.append(state_numel(learner))
    assert sizes[1] == sizes[2]  # after the first snapshot nothing grows: no stored examples
    assert learner.stored_examples() == 0
    assert learner.groups == [[0, 1], [2, 3], [4, 5]]


def test_task_incremental_prediction_is_restricted_to_the_task():
    s = task_incremental(make_blobs(num_classes=4, per_class=30, dim=8, seed=1), tasks=2, seed=0)
    learner = _learner()
    for e in s:
        learner.learn(e)
    x, _ = s[0].test_tensors()
    scores = learner.predict(x, task_id=0)
    assert torch.isinf(scores[:, 2:]).all() and torch.isfinite(scores[:, :2]).all()


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="distill_coef"):
        build_config(PRDConfig, {"distill_coef": -1})
    with pytest.raises(ConfigError, match="prototypes_lr"):
        build_config(PRDConfig, {"prototypes_lr": 0})


def test_quick_reproduction_distillation_helps_without_storing_data():
    from lifelong.papers import reproduce as run
    from lifelong.papers.prd import reproduce

    claim = reproduce("quick")
    m = claim.measured
    assert claim.paper == "prd" and claim.scale == "quick"
    assert m["prd_state_growth_entries"] == 0
    # distillation is what keeps old digits, every arm's lr picked on validation from the same grid: prd 0.41
    # vs 0.17 without it and 0.19 for fine-tuning on an AMD AVX-512 machine (native and default kernels), 0.28
    # vs 0.13-0.17 and 0.19 on an Intel AVX-512 + AMX one (avx512, avx2 and default kernels)
    assert m["final_acc/prd"] > m["final_acc/prd_no_distill"] + 0.10
    assert m["final_acc/prd"] > m["final_acc/finetune"] + 0.05
    assert m["tuned/finetune"] in {"lr=0.02", "lr=0.05"} and m["tuned/prd"].startswith("lr=")
    assert m["prd_minus_finetune/n"] == 1
    # the verdict reads the paired numbers (a short 2-task, 1-epoch run): impossible margins fail, negative
    # ones pass, and PRD without its distillation (weight 0) is judged not held against its ablation
    short = ("epochs=1", "tasks=2")
    assert run("prd", sets=(*short, "min_gain_over_finetune=1.01")).held is False
    assert run("prd", sets=(*short, "min_gain_over_finetune=-1.0", "min_gain_over_no_distill=-1.0")).held is True
    broken = run("prd", sets=(*short, "min_gain_over_finetune=-1.0", "distill_grid=0.0"))
    assert broken.held is False and broken.measured["prd_minus_no_distill/mean"] == 0.0


def test_pixel_defaults_train_enough_steps_and_paper_fields_stay():
    """On pixels PRD runs batch 32 x 50 epochs at lr 0.02 / distill 12 / prototype weight 4 (batch 128 x 10
    epochs left the encoder and prototypes near their start: 9.9 % on digits); on sentence embeddings its
    prototypes learn at lr 0.1; without a data kind (the reproduction) the fields stay."""
    c = build_config(PRDConfig, data_kind="pixels")
    assert (c.batch_size, c.epochs, c.lr, c.distill_coef, c.prototypes_coef) == (32, 50, 0.02, 12.0, 4.0)
    e = build_config(PRDConfig, data_kind="embeddings")
    assert (e.hidden, e.prototypes_lr) == ((), 0.1)
    d = build_config(PRDConfig)
    assert (d.batch_size, d.epochs, d.distill_coef, d.prototypes_coef, d.prototypes_lr) == (128, 10, 4.0, 2.0, 0.01)
