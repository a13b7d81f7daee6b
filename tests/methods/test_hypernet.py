"""Task-conditioned hypernetworks (HNET, von Oswald et al. 2020) and the LSTM variant of DPHN (arXiv 2209.07712)."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.data import load_digits, make_blobs
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.layers.hypernetwork import target_shapes
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental, domain_incremental

TINY = {
    "epochs": 8,
    "batch_size": 32,
    "hidden": (16,),
    "chunk_size": 100,
    "lstm_hidden": 16,
    "emb_dim": 8,
    "chunk_emb_dim": 8,
    "mlp_hidden": (16,),
    "lr": 0.01,
}


@pytest.fixture(scope="module")
def permuted():
    return domain_incremental(load_digits(), tasks=3, kind="permuted", seed=0, task_labels=True, share="disjoint")


def _generated(learner, slot):
    with torch.no_grad():
        return learner.hnet.generate(*learner.hnet.slot_inputs([slot], None))[0].clone()


@pytest.mark.parametrize("hnet", ["lstm", "mlp"])
def test_output_regulariser_keeps_earlier_tasks_weights(permuted, hnet):
    drift = {}
    for beta in (0.0, 0.05):
        learner = make_learner("hypernet", {**TINY, "hnet": hnet, "beta": beta}, seed=0)
        learner.learn(permuted[0])
        g0 = _generated(learner, 0)
        learner.learn(permuted[1])
        learner.learn(permuted[2])
        drift[beta] = float((_generated(learner, 0) - g0).norm() / g0.norm())
    assert drift[0.05] < 0.3 * drift[0.0]


def test_task_embeddings_select_the_generated_network(permuted):
    learner = make_learner("hypernet", TINY, seed=0)
    learner.learn(permuted[0])
    emb0 = learner.hnet.emb_bank[0].clone()
    init1 = learner.hnet.emb_bank[1].clone()  # task 1's embedding as drawn, before its task
    learner.learn(permuted[1])
    # the embedding of task 0 is stored and frozen: learning task 1 trains task 1's embedding only
    assert torch.equal(learner.hnet.emb_bank[0], emb0)
    assert not torch.equal(learner.hnet.emb_bank[1], init1)
    x, _ = permuted[0].test_tensors()
    s0, s1 = learner.predict(x, task_id=0), learner.predict(x, task_id=1)
    assert s0.shape == s1.shape == (len(x), 10)
    assert not torch.allclose(s0, s1)


def test_lstm_chunks_depend_on_earlier_chunks_mlp_chunks_do_not():
    from lifelong.layers.hypernetwork import HyperNetwork

    kw = dict(emb_dim=4, chunk_size=5, chunk_emb_dim=3, mlp_hidden=(8,), lstm_hidden=8, growth_rank=0, max_tasks=2)
    for kind, dependent in (("lstm", True), ("mlp", False)):
        torch.manual_seed(0)
        h = HyperNetwork(20, kind=kind, **kw)
        e = torch.randn(1, 4)
        with torch.no_grad():
            before = h.generate(e)
            h.chunk_emb[0] += 1.0  # change the input of the first chunk only
            after = h.generate(e)
        assert not torch.allclose(before[:, :5], after[:, :5])
        assert (not torch.allclose(before[:, 5:], after[:, 5:])) == dependent


def test_fisher_importance_equals_per_example_gradients(permuted):
    learner = make_learner("hypernet", {**TINY, "regularizer": "fisher"}, seed=0)
    learner.learn(permuted[0])
    x, y = permuted[0].train_tensors()
    x, y = x[:7], y[:7]
    got = learner.fisher_importance(x, y)
    g = _generated(learner, 0).requires_grad_(True)
    total = torch.zeros_like(g)
    for i in range(len(y)):
        out = learner.model.run(x[i : i + 1], g)
        (grad,) = torch.autograd.grad(F.cross_entropy(out, y[i : i + 1]), g)
        total += grad.pow(2)
    want = total / len(y)
    assert torch.allclose(got, want / want.mean(), rtol=1e-4, atol=1e-5)
    assert learner.importance[0].shape == (learner.model.n_out,)


def test_fisher_regulariser_runs_and_keeps_old_tasks(permuted):
    learner = make_learner("hypernet", {**TINY, "regularizer": "fisher", "beta": 0.05}, seed=0)
    result = run(permuted, learner, progress=False)
    assert result.metrics["forgetting"] < 0.1


def test_regularising_a_random_subset_of_earlier_tasks_and_clipping(permuted):
    learner = make_learner("hypernet", {**TINY, "reg_tasks": 1, "beta": 0.05, "grad_clip": 1.0}, seed=0)
    result = run(permuted, learner, progress=False)
    assert result.metrics["forgetting"] < 0.1


def test_growth_terms_are_per_task_and_frozen_after_their_task(permuted):
    learner = make_learner("hypernet", {**TINY, "growth_rank": 2}, seed=0)
    learner.learn(permuted[0])
    b0 = learner.hnet.grow_b_bank[0].clone()
    assert b0.abs().sum() > 0  # task 0 trained its own growth term
    learner.learn(permuted[1])
    assert torch.equal(learner.hnet.grow_b_bank[0], b0)
    assert not torch.equal(learner.hnet.grow_b_bank[1], b0)
    trainable, total = learner.parameter_counts()
    assert total - trainable == learner.hnet.per_task_parameters()


def test_without_task_id_scores_are_finite_distributions():
    stream = class_incremental(make_blobs(num_classes=6, per_class=40, dim=8, seed=1), tasks=3, seed=0)
    learner = make_learner("hypernet", TINY, seed=0)
    learner.learn(stream[0])
    x, _ = stream[0].test_tensors()
    one = learner.predict(x)
    g = _generated(learner, 0)
    assert torch.allclose(one, learner.model.run(x, g)[:, :2], atol=1e-5)
    learner.learn(stream[1])
    learner.learn(stream[2])
    scores = learner.predict(x)
    assert scores.shape == (len(x), 6) and torch.isfinite(scores).all()
    assert torch.allclose(scores.exp().sum(1), torch.ones(len(x)), atol=1e-4)


def test_target_shapes_and_size_report():
    assert target_shapes(64, (100,), 10) == [(100, 64), (100,), (10, 100), (10,)]
    learner = make_learner("hypernet", {"hidden": (100,), "chunk_size": 1000}, seed=0)
    learner.prepare((1, 8, 8), 10)
    report = learner.size_report()
    assert report["target"] == 64 * 100 + 100 + 100 * 10 + 10
    assert learner.hnet.n_chunks == 8


@pytest.mark.parametrize(
    "bad",
    [
        {"hnet": "gru"},
        {"regularizer": "l2"},
        {"task_inference": "oracle"},
        {"beta": -1.0},
        {"chunk_size": 0},
        {"hnet": "mlp", "chunk_emb_dim": 0},
        {"growth_rank": -1},
    ],
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        make_learner("hypernet", bad)


def test_too_many_tasks_names_the_fix(permuted):
    learner = make_learner("hypernet", {**TINY, "max_tasks": 1, "epochs": 1}, seed=0)
    learner.learn(permuted[0])
    with pytest.raises(ConfigError, match="max_tasks"):
        learner.learn(permuted[1])


def test_quick_reproduction_of_paper_35():
    from lifelong.papers.dphn import check, reproduce
    from lifelong.papers.spec import load_spec

    claim = reproduce("quick")
    m = claim.measured
    assert claim.paper == "dphn" and claim.scale == "quick"
    for k in ("hnet-mlp", "hnet-lstm"):
        assert m[f"{k} forgetting"] <= 0.02  # the output regulariser keeps earlier tasks
        assert m[f"{k} forgetting"] < m["finetune[adam] forgetting"] / 2
        # how well each task is learned is reported apart from what is kept
        assert 0.5 < m[f"{k} just-learned acc"] <= 1.0
        assert m[f"{k} - baseline just-learned acc/n"] == 1
    # 3 tasks at quick scale: fine-tuning forgets little, so only the forgetting and LSTM parts can hold
    assert m["parts held (gap, forgetting, lstm>=mlp-0.5)"].split(", ")[1] == "True"
    # without the output regulariser (beta = 0) the hnets forget and the forgetting part is judged not held
    sets = ("methods.hnet-mlp.config.beta=0.0", "methods.hnet-lstm.config.beta=0.0")
    broken = check(load_spec("dphn", "quick", sets=sets), "quick")
    assert broken.held is False
    assert broken.measured["parts held (gap, forgetting, lstm>=mlp-0.5)"].split(", ")[1] == "False"
