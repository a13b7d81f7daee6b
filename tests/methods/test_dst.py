"""DST-CL (arXiv 2308.14831): per-task sparse masks, prune-and-grow rules, exact isolation."""

import pytest
import torch

from lifelong.data import load_digits
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.heads.task_scores import combine_task_scores
from lifelong.layers.sparse import erk_densities
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental, task_incremental

QUICK = {"epochs": 3, "batch_size": 32, "hidden": (32,), "update_every": 10, "lr": 0.01}


@pytest.fixture(scope="module")
def digits_til():
    return task_incremental(load_digits(), tasks=3, seed=0)


def test_isolation_is_exact_and_bwt_is_zero(digits_til):
    learner = make_learner("dst", QUICK, seed=0)
    x0, _ = digits_til[0].test_tensors()
    learner.learn(digits_til[0])
    before = learner.predict(x0, task_id=0).clone()
    weights0 = [w.detach()[m].clone() for w, m in zip(learner.model.weights, learner.masks[0])]
    learner.learn(digits_til[1])
    learner.learn(digits_til[2])
    assert torch.equal(learner.predict(x0, task_id=0)[:, : before.shape[1]], before)
    for w, m, old in zip(learner.model.weights, learner.masks[0], weights0):
        assert torch.equal(w.detach()[m], old)
    # later tasks reuse (share) some of task 0's frozen weights
    assert any((m0 & m2).any() for m0, m2 in zip(learner.masks[0], learner.masks[2]))


def test_without_isolation_old_tasks_change(digits_til):
    learner = make_learner("dst", {**QUICK, "isolate": False}, seed=0)
    x0, _ = digits_til[0].test_tensors()
    learner.learn(digits_til[0])
    before = learner.predict(x0, task_id=0).clone()
    weights0 = [w.detach().clone() for w in learner.model.weights]
    learner.learn(digits_til[1])
    assert not torch.equal(learner.predict(x0, task_id=0)[:, : before.shape[1]], before)
    # only the weights the new task trains change (the official merge keeps the rest): task 0's weights
    # outside task 1's mask keep their values, they are neither re-initialised nor zeroed
    for w, old, m0, m1 in zip(learner.model.weights, weights0, learner.masks[0], learner.masks[1]):
        assert torch.equal(w.detach()[m0 & ~m1], old[m0 & ~m1])
        assert not torch.equal(w.detach()[m0 & m1], old[m0 & m1])


def test_run_gives_zero_backward_transfer_and_learns(digits_til):
    result = run(digits_til, make_learner("dst", {**QUICK, "epochs": 8, "hidden": (64,)}, seed=1), progress=False)
    assert result.metrics["backward_transfer"] == 0.0
    assert result.metrics["final_average_accuracy"] > 0.85  # 3 tasks of 3-4 digit classes, task id given


@pytest.mark.parametrize("growth", ["random", "unfired", "gradient", "momentum"])
@pytest.mark.parametrize("init", ["uniform", "erk"])
def test_prune_and_grow_keeps_each_layer_count(digits_til, growth, init):
    learner = make_learner("dst", {**QUICK, "growth": growth, "init": init, "update_every": 3}, seed=0)
    learner.prepare(digits_til[0].input_shape, digits_til.num_classes)
    learner.classes.observe(digits_til[0], digits_til[0].train_tensors()[1])
    learner.before_experience(digits_til[0])
    counts = [int(m.sum()) for m in learner.mask]
    changed = False
    x, y = digits_til[0].train_tensors()
    for s in range(0, 12 * 32, 32):
        start = learner.mask[0].clone()
        learner.train_step(x[s : s + 32], y[s : s + 32], digits_til[0])
        changed |= not torch.equal(start, learner.mask[0])
        assert [int(m.sum()) for m in learner.mask] == counts
    assert changed  # the topology moved
    # weights outside the mask are exactly zero (nothing is frozen in the first task)
    for w, m in zip(learner.model.weights, learner.mask):
        assert torch.count_nonzero(w.detach()[~m]) == 0


def _dense_gradient(learner, x, y):
    """d loss / d (W * mask) at every entry, computed apart from the learner (frozen entries zeroed)."""
    eff = [(w.detach() * m).requires_grad_(True) for w, m in zip(learner.model.weights, learner.mask_f)]
    h = x.reshape(len(x), -1)
    for i, (we, b) in enumerate(zip(eff, learner.model.bias)):
        h = torch.nn.functional.linear(h, we, b.detach())
        if i < len(eff) - 1:
            h = torch.relu(h)
    loss = torch.nn.functional.cross_entropy(h.masked_fill(~learner.class_mask, float("-inf")), y)
    return [g * nf for g, nf in zip(torch.autograd.grad(loss, eff), learner.not_frozen)]


@pytest.mark.parametrize("task", [0, 1])
def test_gradient_growth_scores_the_dense_gradient(digits_til, task):
    """Growth reads d loss / d (W * mask) outside the mask too (the official dense gradient), not a masked zero."""
    cfg = {**QUICK, "growth": "gradient", "prune_rate": 0.25, "prune_rate_min": 0.25, "update_every": 10_000}
    learner = make_learner("dst", {**cfg, "epochs": 1}, seed=0)
    for e in range(task):
        learner.learn(digits_til[e])
    exp = digits_til[task]
    if learner.model is None:
        learner.prepare(exp.input_shape, digits_til.num_classes)
    learner.classes.observe(exp, exp.train_tensors()[1])
    learner.before_experience(exp)
    x, y = exp.train_tensors()
    x, y = x[:32], y[:32]
    expected = _dense_gradient(learner, x, y)
    learner.train_step(x, y, exp)  # the learner's own backward; .grad is never set by hand here
    for w, g, m, f in zip(learner.model.weights, expected, learner.mask, learner.frozen):
        assert torch.allclose(w.grad, g, atol=1e-6)
        assert torch.count_nonzero(w.grad[~m & ~f]) > 0  # inactive entries have a gradient to score
        assert torch.count_nonzero(w.grad[f]) == 0  # frozen entries have none
    old = [m.clone() for m in learner.mask]
    grad = [w.grad.abs().clone() for w in learner.model.weights]
    learner._prune_and_grow()
    for i, (new, o, g) in enumerate(zip(learner.mask, old, grad)):
        grown = new & ~o
        assert int(new.sum()) == int(o.sum()) and grown.any()
        # every grown weight has a larger dense gradient than every weight left inactive
        assert g[grown].min() >= g[~new & ~o].max(), i


def test_momentum_growth_reads_moments_of_the_dense_gradient(digits_til):
    learner = make_learner("dst", {**QUICK, "growth": "momentum", "update_every": 10_000, "epochs": 1}, seed=0)
    exp = digits_til[0]
    learner.prepare(exp.input_shape, digits_til.num_classes)
    learner.classes.observe(exp, exp.train_tensors()[1])
    learner.before_experience(exp)
    x, y = exp.train_tensors()
    for s in range(0, 3 * 32, 32):
        learner.train_step(x[s : s + 32], y[s : s + 32], exp)
    for w, m in zip(learner.model.weights, learner.mask):
        state = learner.optimizer.state[w]
        assert torch.count_nonzero(state["exp_avg"][~m]) > 0  # Adam's moments cover inactive entries
        assert torch.count_nonzero(w.detach()[~m]) == 0  # while the weights there stay exactly zero


def test_unfired_growth_prefers_weights_never_active_in_the_task(digits_til):
    learner = make_learner("dst", {**QUICK, "growth": "unfired"}, seed=0)
    learner.prepare(digits_til[0].input_shape, digits_til.num_classes)
    learner.classes.observe(digits_til[0], digits_til[0].train_tensors()[1])
    learner.before_experience(digits_til[0])
    fired_before = [f.clone() for f in learner.fired]
    old = [m.clone() for m in learner.mask]
    learner._prune_and_grow()
    for m, o, f in zip(learner.mask, old, fired_before):
        grown = m & ~o
        assert not (grown & f).any()  # plenty of unfired weights: none of the grown ones had fired


def test_erk_densities_hit_the_budget_and_cap_at_one():
    shapes = [(256, 784), (256, 256), (10, 256)]
    d = erk_densities(shapes, 0.2)
    sizes = [a * b for a, b in shapes]
    assert sum(di * s for di, s in zip(d, sizes)) == pytest.approx(0.2 * sum(sizes))
    assert d[2] > d[1] > d[0]  # small layers denser
    d = erk_densities([(4, 4), (1000, 1000)], 0.1)
    assert d[0] == 1.0 and 0 < d[1] < 0.1


def test_without_task_id_scores_are_finite_mixtures_over_tasks(digits_til):
    from lifelong.data import make_blobs

    stream = class_incremental(make_blobs(num_classes=6, per_class=60, dim=8, seed=1), tasks=3, seed=0)
    learner = make_learner("dst", QUICK, seed=0)
    learner.learn(stream[0])
    x, _ = stream[0].test_tensors()
    one = learner.predict(x)
    # one task learned: its sub-network's log-softmax over its classes
    logits = learner.model(x, [m.float() for m in learner.masks[0]], 0)[:, :2]
    assert torch.allclose(one, torch.log_softmax(logits, 1), atol=1e-5)
    learner.learn(stream[1])
    learner.learn(stream[2])
    scores = learner.predict(x)
    assert scores.shape == (len(x), 6) and torch.isfinite(scores).all()
    assert torch.allclose(scores.exp().sum(1), torch.ones(len(x)), atol=1e-4)  # a distribution over 6 classes
    latest = make_learner("dst", {**QUICK, "task_inference": "latest"}, seed=0)
    latest.learn(stream[0])
    latest.learn(stream[1])
    assert torch.isfinite(latest.predict(x)).all()


def test_combine_task_scores_is_a_mixture():
    logits = torch.tensor([[[2.0, 0.0, 5.0]], [[9.0, 1.0, 3.0]]])  # (T=2, n=1, C=3)
    masks = torch.tensor([[True, True, False], [False, False, True]])
    logq = torch.log(torch.tensor([[0.25, 0.75]]))
    out = combine_task_scores(logits, masks, logq).exp()[0]
    p0 = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    assert torch.allclose(out, torch.tensor([0.25 * p0[0], 0.25 * p0[1], 0.75]), atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        {"density": 0.0},
        {"density": 1.5},
        {"growth": "magic"},
        {"init": "lottery"},
        {"prune_rate": 1.0},
        {"update_every": 0},
        {"task_inference": "oracle"},
        {"fresh_init": "ones"},
    ],
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        make_learner("dst", bad)


def test_fresh_init_zero_starts_new_weights_at_zero(digits_til):
    learner = make_learner("dst", {**QUICK, "fresh_init": "zero", "epochs": 1}, seed=0)
    learner.learn(digits_til[0])
    learner.classes.observe(digits_til[1], digits_til[1].train_tensors()[1])
    learner.before_experience(digits_til[1])
    for w, m, f in zip(learner.model.weights, learner.mask, learner.frozen):
        assert torch.count_nonzero(w.detach()[m & ~f]) == 0
    other = make_learner("dst", {**QUICK, "epochs": 1}, seed=0)
    other.learn(digits_til[0])
    other.classes.observe(digits_til[1], digits_til[1].train_tensors()[1])
    other.before_experience(digits_til[1])
    w, m, f = other.model.weights[0], other.mask[0], other.frozen[0]
    assert torch.equal(w.detach()[m & ~f], other.model.init_weight(0)[m & ~f])


def test_too_many_tasks_names_the_fix(digits_til):
    learner = make_learner("dst", {**QUICK, "max_tasks": 1}, seed=0)
    learner.learn(digits_til[0])
    with pytest.raises(ConfigError, match="max_tasks"):
        learner.learn(digits_til[1])


def test_quick_reproduction_of_paper_39():
    from lifelong.papers.dst_cl import check, reproduce
    from lifelong.papers.spec import load_spec

    claim = reproduce("quick")
    m = claim.measured
    assert claim.paper == "dst-cl" and claim.scale == "quick"
    assert m["max |BWT| over DST runs"] == 0.0  # isolation is exact
    # the baseline shares DST's current-task loss, and it still forgets
    assert m["baseline (dense fine-tune, same loss)"] == "finetune[adam,task loss]"
    assert m["finetune[adam,task loss] BWT"] < -0.05
    assert m["min mean gap DST - baseline (points)"] > 0  # sparse isolation beats dense fine-tuning
    assert {m[f"{k} lr"] for k in ("finetune[adam,task loss]", "dst[uniform,random,d=0.2]")} <= {0.001, 0.003}
    # the verdict reads the numbers: with no margin to meet the quick run holds, and DST without its isolation
    # (the component behind BWT = 0) is judged not held
    easy = ("lr_grid=0.001", "min_gap=-1.0")
    assert check(load_spec("dst-cl", "quick", sets=easy), "quick").held is True
    broken_spec = load_spec("dst-cl", "quick", sets=(*easy, "dst.isolate=false"))
    broken = check(broken_spec, "quick")
    assert broken.held is False and broken.measured["max |BWT| over DST runs"] > broken_spec["max_abs_bwt"]
