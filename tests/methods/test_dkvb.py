"""DKVB (Träuble et al. 2023): frozen keys, local value updates, class-incremental behaviour."""

import pytest
import torch

from lifelong.data import load_digits
from lifelong.errors import ConfigError
from lifelong.methods import make_learner
from lifelong.methods.dkvb import KeyValueBottleneck
from lifelong.scenarios import class_incremental

QUICK = {"epochs": 3, "num_codebooks": 16, "pairs_per_codebook": 32, "dim_keys": 4, "init_epochs": 3, "batch_size": 32}


@pytest.fixture
def stream(blobs):
    return class_incremental(blobs, tasks=2, seed=0)


def test_keys_are_frozen_bit_exactly_after_initialisation(stream):
    learner = make_learner("dkvb", QUICK)
    learner.prepare(stream[0].input_shape, stream.num_classes)
    assert not bool(learner.bottleneck.initialised)
    learner.before_experience(stream[0])  # EMA k-means on the unlabelled inputs
    keys = learner.bottleneck.keys.clone()
    projection = learner.bottleneck.projection.clone()
    assert bool(learner.bottleneck.initialised) and keys.abs().sum() > 0
    learner.learn(stream[0])
    learner.learn(stream[1])
    assert torch.equal(learner.bottleneck.keys, keys)
    assert torch.equal(learner.bottleneck.projection, projection)
    assert not learner.bottleneck.keys.requires_grad
    assert [n for n, p in learner.model.named_parameters() if p.requires_grad] == ["values"]


def test_only_fetched_values_change(stream):
    learner = make_learner("dkvb", QUICK)
    learner.learn(stream[0])
    before = learner.bottleneck.values.detach().clone()
    x1, _ = stream[1].train_tensors()
    fetched = learner.fetched(x1)
    assert 0 < fetched.sum() < fetched.numel()  # the task touches some pairs, not all
    learner.learn(stream[1])
    after = learner.bottleneck.values.detach()
    changed = (after != before).any(-1)
    assert torch.equal(after[~fetched], before[~fetched])  # bit-exact outside the fetched pairs
    assert changed[fetched].float().mean() > 0.9
    assert not changed[~fetched].any()


def test_momentum_breaks_locality_as_the_catalogue_warns(stream):
    # With momentum, rows fetched in earlier steps keep moving: the rows fetched by a
    # *later* task are the only ones plain SGD changes, but momentum also moves others.
    learner = make_learner("dkvb", {**QUICK, "momentum": 0.9, "reset_optimizer": False})
    learner.learn(stream[0])
    before = learner.bottleneck.values.detach().clone()
    fetched = learner.fetched(stream[1].train_tensors()[0])
    learner.learn(stream[1])
    moved = (learner.bottleneck.values.detach() != before).any(-1)
    assert moved[~fetched].any()


def test_values_start_at_zero_and_decoder_averages():
    bn = KeyValueBottleneck(in_dim=6, num_classes=3, num_codebooks=4, pairs=5, dim_keys=2, topk=2)
    assert torch.count_nonzero(bn.values) == 0
    with torch.no_grad():
        bn.values.copy_(torch.arange(4 * 5 * 3, dtype=torch.float32).view(4, 5, 3))
    idx = torch.tensor([[[0, 1], [2, 3], [4, 0], [1, 1]]])  # (B=1, C=4, topk=2)
    expected = torch.stack([bn.values[c, idx[0, c]] for c in range(4)]).mean(dim=(0, 1))
    assert torch.allclose(bn.decode(idx)[0], expected)


def test_untrained_learner_scores_nothing(stream):
    learner = make_learner("dkvb", QUICK)
    x, _ = stream[0].test_tensors()
    learner.prepare(stream[0].input_shape, stream.num_classes)
    assert learner.predict(x).shape == (len(x), 0)


def test_kmeans_initialisation_and_class_incremental_accuracy():
    # digits, 2 tasks of 5 classes (179 first-task test images). On the 4-blob stream (16 test points) the
    # gap depended on the seed: dkvb_old - probe_old - 0.3 was +0.013 for seed 0 and -0.24 to -0.80 for most
    # other learner / data seeds. Here, over data seeds 0-2 x learner seeds 0-2 and ATEN_CPU_CAPABILITY=
    # default / avx2 / avx512 (and MKL_CBWR=COMPATIBLE): dkvb_old 0.765-0.88, probe_old 0.00.
    stream = class_incremental(load_digits(), tasks=2, seed=0)
    learner = make_learner(
        "dkvb", {"key_init": "kmeans", "num_codebooks": 32, "pairs_per_codebook": 64, "epochs": 5, "init_epochs": 3}
    )
    learner.learn(stream[0])
    learner.learn(stream[1])
    probe = make_learner("finetune", {"hidden": (), "epochs": 3})
    probe.learn(stream[0])
    probe.learn(stream[1])
    x, y = stream[0].test_tensors()
    dkvb_old = float((learner.predict(x).argmax(1) == y).float().mean())
    probe_old = float((probe.predict(x).argmax(1) == y).float().mean())
    assert dkvb_old > 0.6 and dkvb_old > probe_old + 0.5  # the first task is largely kept; the probe forgets it


@pytest.mark.parametrize(
    "bad", [{"key_init": "random"}, {"topk": 0}, {"topk": 300}, {"decay": 1.0}, {"num_codebooks": 0}]
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        make_learner("dkvb", bad)


def test_init_keys_on_separate_unlabelled_inputs(stream):
    learner = make_learner("dkvb", QUICK)
    learner.prepare(stream[0].input_shape, stream.num_classes)
    x1, _ = stream[1].train_tensors()
    learner.init_keys(x1)  # inputs of another experience: the first one's data are not used for the keys
    keys = learner.bottleneck.keys.clone()
    learner.learn(stream[0])
    assert torch.equal(learner.bottleneck.keys, keys)
    with pytest.raises(ConfigError, match="already initialised"):
        learner.init_keys(x1)
    fresh = make_learner("dkvb", QUICK)
    with pytest.raises(ConfigError, match="prepare"):
        fresh.init_keys(x1)


def test_quick_reproduction_returns_a_well_formed_claim():
    import json

    from lifelong.papers import format_claim, get_paper, reproduce

    claim = reproduce("dkvb")
    assert claim.paper == "dkvb" and claim.scale == "quick"
    m = claim.measured
    # DKVB keeps old digits the probe forgets: ~0.92 vs ~0.19 over 2 seeds with any CPU kernel (margin 0.20)
    assert m["dkvb_final_accuracy"] >= m["linear_probe_final_accuracy"] + 0.40 and m["dkvb_final_accuracy"] > 0.65
    assert m["dkvb-probe/mean"] == pytest.approx(m["dkvb_final_accuracy"] - m["linear_probe_final_accuracy"], abs=1e-3)
    assert m["dkvb-probe/lo"] > 0.2 and m["dkvb-probe/n"] == 2
    assert m["keys_bit_identical"] is True and m["unfetched_values_bit_identical"] is True
    assert m["unlabelled_key_examples"] > 0 and {"dkvb_lr", "probe_lr"} <= set(m)
    assert claim.held is True
    json.dumps(claim.to_dict())
    verdict = [line.split(None, 1)[1] for line in format_claim(claim).splitlines() if line.split()[:1] == ["result"]]
    assert verdict == ["HELD" if claim.held else "NOT HELD"]  # "HELD" alone is also inside "NOT HELD"
    paper = get_paper("dkvb")
    assert paper.number == 26 and paper.status == "claim checked"
    # a broken DKVB whose updates are not local (SGD momentum carried across tasks) is judged NOT HELD,
    # although its accuracy gap alone would pass
    fast = ("tasks=2", "seeds=[0]", "lr_grid=[0.3]")
    broken = reproduce("dkvb", sets=(*fast, "dkvb.momentum=0.9", "dkvb.reset_optimizer=false"))
    assert broken.measured["unfetched_values_bit_identical"] is False and broken.held is False
    assert reproduce("dkvb", sets=(*fast, "margin=1.01")).held is False  # the gap is read too
