"""HLE (Lee et al., ICCV 2023): pseudo-labels, pseudo-label balanced memory, per-level prediction."""

import pytest
import torch

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.methods.config import build_config
from lifelong.methods.hle import HLE, HLEConfig
from lifelong.scenarios.hierarchical import class_parents, hierarchical

PAIRS = (0, 0, 1, 1, 2, 2)


def _stream(seed=0):
    data = make_blobs(num_classes=6, per_class=60, dim=8, seed=seed)
    return hierarchical(data, 0.4, seed=seed, coarse_labels=PAIRS, batch_size=10)


def _hle(stream, **kw):
    cfg = {"optimizer": "adam", "lr": 1e-2, "buffer_size": 30, "parents": tuple(class_parents(stream)), **kw}
    return HLE(build_config(HLEConfig, cfg), seed=0)


def test_targets_imply_parents_and_pseudo_label_within_children():
    stream = _stream()
    learner = _hle(stream)
    learner.prepare(stream[0].input_shape, stream.num_classes)
    K = stream.params["num_coarse"]
    parents = torch.tensor(class_parents(stream))
    fine = torch.arange(K, stream.num_classes)
    learner.classes.seen[:] = True
    scores = torch.randn(len(fine) + K, stream.num_classes)
    y = torch.cat([fine, torch.arange(K)])
    coarse_t, fine_t = learner._targets(y, scores)
    assert torch.equal(coarse_t[: len(fine)], parents[fine])  # fine label -> its parent
    assert torch.equal(fine_t[: len(fine)], fine)
    assert torch.equal(coarse_t[len(fine) :], torch.arange(K))
    pseudo = fine_t[len(fine) :]
    assert torch.equal(parents[pseudo], torch.arange(K))  # pseudo-label is a child of the coarse label
    best = scores[len(fine) :].masked_fill(parents.unsqueeze(0) != torch.arange(K).unsqueeze(1), -1e9).argmax(1)
    assert torch.equal(pseudo, best)
    learner.classes.seen[K:] = False  # no fine child seen yet: no pseudo-label
    assert (learner._targets(torch.arange(K), scores[:K])[1] == -1).all()


def test_memory_keeps_new_classes_and_balances_pseudo_labels():
    stream = _stream()
    learner = _hle(stream, buffer_size=20)
    learner.learn(stream[0])
    assert learner.size == 20
    learner.learn(stream[1])  # the fine children of one coarse class appear
    keys = learner._keys(learner.mem_x[:20], learner.mem_y[:20])
    new = torch.tensor(stream[1].classes)
    assert torch.isin(keys, new).sum() >= 4  # new classes were admitted
    counts = torch.bincount(keys, minlength=stream.num_classes)
    assert counts.max() - counts[counts > 0].min() <= 4  # roughly balanced over (pseudo-)classes


def test_predict_is_per_level_and_learns_both_levels():
    stream = _stream()
    learner = _hle(stream)
    res = run(stream, learner, progress=False)
    x, _ = stream[-1].test_tensors()
    s = learner.predict(x, task_id=1)
    K = stream.params["num_coarse"]
    assert s.shape == (len(x), stream.num_classes)
    assert torch.isinf(s[:, :K]).all() and torch.isfinite(s[:, K:]).all()
    assert torch.allclose(learner.predict(x, task_id=0)[:, :K].exp().sum(1), torch.ones(len(x)), atol=1e-4)
    assert res.accuracy_matrix[-1, 0] > 0.8  # coarse level kept after the fine experiences
    assert res.accuracy_matrix[-1, 1:].mean() > 0.6  # fine level learned (chance 1/6)


def test_without_hierarchy_the_loss_is_er_cross_entropy(blobs):
    from lifelong.scenarios import class_incremental

    stream = class_incremental(blobs, tasks=2, seed=0)
    learner = HLE(build_config(HLEConfig, {}), seed=0)
    learner.prepare(stream[0].input_shape, stream.num_classes)
    x, y = stream[0].train_tensors()
    learner.classes.observe(stream[0], y)
    expected = torch.nn.functional.cross_entropy(learner.logits(x), y)
    assert torch.allclose(learner.loss(x, y, stream[0]), expected)


def test_bad_parents_raise():
    stream = _stream()
    with pytest.raises(ConfigError):
        build_config(HLEConfig, {"parents": (-2, 0)})
    learner = HLE(build_config(HLEConfig, {"parents": (-1, 0)}), seed=0)
    with pytest.raises(ConfigError, match="class_parents"):
        learner.learn(stream[0])
    learner = HLE(build_config(HLEConfig, {"parents": (-1,) * 3 + (4,) * 6}), seed=0)  # parent is fine
    with pytest.raises(ConfigError, match="depth 2"):
        learner.learn(stream[0])


def test_level_softmax_loss_and_log_probs():
    from lifelong.heads import LevelSoftmax

    parents = [-1, -1, 0, 0, 1, 1]
    tree = LevelSoftmax(parents, 6)
    seen = torch.tensor([True, True, True, True, True, False])
    logits = torch.randn(3, 6)
    y = torch.tensor([0, 2, 4])  # coarse-labelled, fine child of 0, fine child of 1
    coarse_t, fine_t = tree.targets(y)
    assert coarse_t.tolist() == [0, 0, 1] and fine_t.tolist() == [-1, 2, 4]
    coarse = torch.nn.functional.cross_entropy(logits[:, :2], coarse_t)
    fine_logits = logits[1:, 2:5]  # seen fine classes 2, 3, 4
    fine = torch.nn.functional.cross_entropy(fine_logits, torch.tensor([0, 2]), reduction="sum") / 3
    assert torch.allclose(tree.loss(logits, y, seen), coarse + fine)
    lp = tree.log_probs(logits, seen)
    assert torch.allclose(lp[:, :2].exp().sum(1), torch.ones(3))
    assert torch.allclose(lp[:, 2:5].exp().sum(1), torch.ones(3))
    assert torch.isinf(lp[:, 5]).all()
    with pytest.raises(ConfigError, match="depth 2"):
        LevelSoftmax([-1, 0, 1], 3)


def test_er_option_gives_the_same_per_level_head():
    from lifelong.methods.er import ER, ERConfig

    stream = _stream()
    parents = tuple(class_parents(stream))
    er = ER(build_config(ERConfig, {"optimizer": "adam", "lr": 1e-2, "buffer_size": 30, "parents": parents}), seed=0)
    flat = ER(build_config(ERConfig, {"optimizer": "adam", "lr": 1e-2, "buffer_size": 30}), seed=0)
    hle = _hle(stream, pseudo_label=False)
    for learner in (er, hle):
        learner.prepare(stream[0].input_shape, stream.num_classes)
        for e in stream[:2]:
            learner.classes.observe(e, e.train_tensors()[1])
    hle.model.load_state_dict(er.model.state_dict())
    x0, y0 = stream[0].train_tensors()
    x1, y1 = stream[1].train_tensors()
    x, y = torch.cat([x0[:20], x1[:20]]), torch.cat([y0[:20], y1[:20]])
    expected = er.tree.loss(er.model(x), y, er.classes.seen)
    assert torch.allclose(er.loss(x, y, stream[1]), expected)
    # the same loss as HLE without pseudo-labels (a fine label also trains its coarse parent)
    assert torch.allclose(hle.loss(x, y, stream[1]), expected)
    assert not torch.allclose(expected, torch.nn.functional.cross_entropy(er.logits(x), y))  # not the flat softmax
    er.learn(stream[0])
    er.learn(stream[1])
    K = stream.params["num_coarse"]
    s = er.predict(x, task_id=0)  # coarse level: a distribution over the seen coarse classes
    assert torch.allclose(s[:, :K].exp().sum(1), torch.ones(len(x)), atol=1e-4)
    flat.learn(stream[0])
    assert flat.tree is None
    with pytest.raises(ConfigError):
        build_config(ERConfig, {"parents": (-3,)})


def test_parent_targets_off_trains_each_example_at_its_own_level_only():
    # the official HLE code's ER baseline: the coarse head sees coarse-labelled examples, the fine head fine ones
    from lifelong.heads import LevelSoftmax
    from lifelong.methods.er import ER, ERConfig

    F = torch.nn.functional
    tree = LevelSoftmax([-1, -1, 0, 0, 1, 1], 6)
    seen = torch.ones(6, dtype=torch.bool)
    logits = torch.randn(3, 6, requires_grad=True)
    y = torch.tensor([1, 2, 4])  # coarse-labelled, fine child of 0, fine child of 1
    loss = tree.loss(logits, y, seen, parent_targets=False)
    coarse = F.cross_entropy(logits[:1, :2], y[:1], reduction="sum") / 3
    fine = F.cross_entropy(logits[1:, 2:], torch.tensor([0, 2]), reduction="sum") / 3
    assert torch.allclose(loss, coarse + fine)
    loss.backward()
    assert (logits.grad[1:, :2] == 0).all() and (logits.grad[:1, 2:] == 0).all()  # no parent target, no fine one
    assert not torch.allclose(tree.loss(logits, y, seen), loss)  # the default adds the parents
    stream = _stream()
    cfg = {"optimizer": "adam", "lr": 1e-2, "buffer_size": 30, "parents": tuple(class_parents(stream))}
    er = ER(build_config(ERConfig, {**cfg, "parent_targets": False}), seed=0)
    er.prepare(stream[0].input_shape, stream.num_classes)
    for e in stream[:2]:
        er.classes.observe(e, e.train_tensors()[1])
    x1, y1 = stream[1].train_tensors()
    expected = er.tree.loss(er.model(x1[:20]), y1[:20], er.classes.seen, parent_targets=False)
    assert torch.allclose(er.loss(x1[:20], y1[:20], stream[1]), expected)
