"""CFSL baselines (arXiv 2209.07863, Kowadlo et al. 2024): Pretrain+Tune with/without replay, ProtoNet."""

import numpy as np
import pytest
import torch

from lifelong.data import load_digits, make_blobs
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.scenarios.cfsl import cfsl, query_accuracy

SMALL = {"hidden": (64,), "epochs": 10}


@pytest.fixture(scope="module")
def instance_stream():
    return cfsl(load_digits(), classes=15, ways=5, instance=True, queries=6, occlusion=0.1, noise=0.1, seed=0)


def _acc(stream, cfg, seed=0):
    r = run(stream, make_learner("cfsl", cfg, seed=seed), seed=seed, progress=False)
    return query_accuracy(r.accuracy_matrix, stream.describe()["test_sizes"]), r


def test_replay_beats_plain_tuning_on_instance_test(instance_stream):
    """Paper claim (b) at tiny scale: replay of past shots prevents forgetting earlier instances."""
    plain, r_plain = _acc(instance_stream, {"learner": "tune", **SMALL})
    replay, r_rep = _acc(instance_stream, {"learner": "tune", "replay": True, **SMALL})
    assert replay >= plain + 0.10
    assert r_rep.accuracy_matrix[-1, 0] > r_plain.accuracy_matrix[-1, 0]  # first set remembered better


def test_protonet_never_forgets_and_matches_class_means():
    data = make_blobs(num_classes=6, per_class=20, dim=8, spread=0.5, seed=2)
    s = cfsl(data, classes=6, ways=2, shots=4, seed=0)
    learner = make_learner("cfsl", {"learner": "protonet"}, seed=0)
    r = run(s, learner, seed=0, progress=False)
    assert r.accuracy_matrix[-1, 0] == r.accuracy_matrix[0, 0]  # prototypes are never overwritten
    x, y = s[0].train_tensors()
    assert torch.allclose(learner.proto_sum[0] / learner.proto_count[0], x[y == 0].reshape(-1, 8).mean(0))
    assert learner.predict(x).shape == (len(x), 6)


def test_replay_buffer_holds_past_shots_only_after_each_set(instance_stream):
    learner = make_learner("cfsl", {"replay": True, **SMALL}, seed=0)
    learner.learn(instance_stream[0])
    assert len(learner.buffer) == 5
    learner.learn(instance_stream[1])
    assert len(learner.buffer) == 10
    plain = make_learner("cfsl", SMALL, seed=0)
    plain.learn(instance_stream[0])
    assert len(plain.buffer) == 0


def test_bad_config_raises():
    with pytest.raises(ConfigError, match="learner"):
        make_learner("cfsl", {"learner": "maml"})
    with pytest.raises(ConfigError):
        make_learner("cfsl", {"buffer_size": 0})


def test_accuracy_falls_with_classes_and_with_occlusion():
    """Paper claims (a) and (c) at tiny scale with the ProtoNet baseline (no training, fast)."""
    from lifelong.scenarios.cfsl import make_glyphs

    proto = {"learner": "protonet"}
    few = _acc(cfsl(make_glyphs(num_classes=10, per_class=20, seed=0), classes=10, ways=5, shots=5), proto)[0]
    many = _acc(cfsl(make_glyphs(num_classes=60, per_class=20, seed=0), classes=60, ways=5, shots=5), proto)[0]
    assert many < few
    digits = load_digits()
    accs = [
        _acc(cfsl(digits, classes=40, ways=10, instance=True, queries=10, occlusion=o, noise=0.1), proto)[0]
        for o in (0.0, 0.3, 0.6)
    ]
    assert accs[0] > accs[1] > accs[2]


def test_pretrain_tune_and_meta_train_protonet_on_background_classes():
    from lifelong.scenarios.cfsl import make_glyphs

    bg = make_glyphs(num_classes=12, per_class=20, seed=99)
    bx, by = bg.x_train, bg.y_train
    stream = cfsl(make_glyphs(num_classes=10, per_class=20, seed=0), classes=10, ways=5, shots=5, seed=0)
    tune = make_learner("cfsl", {**SMALL, "pretrain_epochs": 5}, seed=0)
    tune.prepare(stream[0].input_shape, stream.num_classes)
    head0 = tune.model.head.weight.clone()
    w0 = tune.model.backbone.net[1].weight.clone()
    losses = tune.pretrain(bx, by)
    assert losses[-1] < losses[0] and not torch.equal(w0, tune.model.backbone.net[1].weight)
    assert torch.equal(head0, tune.model.head.weight)  # the stream's head is not touched
    proto = make_learner("cfsl", {"learner": "protonet", **SMALL, "meta_episodes": 60, "meta_shots": 2}, seed=0)
    proto.prepare(stream[0].input_shape, stream.num_classes)
    losses = proto.pretrain(bx, by)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    for e in stream:
        proto.learn(e)
    assert proto.proto_sum.shape == (10, 64)  # prototypes live in the meta-trained embedding
    x, _ = stream[0].test_tensors()
    assert proto.predict(x).shape == (len(x), 10)
    with pytest.raises(ConfigError, match="before the first"):
        proto.pretrain(bx, by)
    with pytest.raises(ConfigError, match="prepare"):
        make_learner("cfsl", SMALL).pretrain(bx, by)


def test_data_kind_defaults_replay_so_the_first_support_set_is_kept(blobs):
    """With a data kind (``lifelong run``) Pretrain+Tune replays the stored support sets; without replay it
    keeps only the last set (CFSL digits, seed 0: 10.4 % final accuracy vs NCM 80.3 %, 63.6 % with replay).
    Paper reproductions (no data kind) keep replay=False."""
    from lifelong.scenarios import make_scenario

    stream = make_scenario("cfsl", blobs, seed=0, classes=4, ways=2, shots=5)
    accs = {}
    for kind in ("vectors", "pixels"):
        learner = make_learner("cfsl", seed=0, data_kind=kind)
        accs[kind] = run(stream, learner, seed=0, progress=False).accuracy_matrix[-1, 0]
    assert make_learner("cfsl", data_kind="embeddings").config.replay and not make_learner("cfsl").config.replay
    assert accs["pixels"] > 0.8 and accs["vectors"] < 0.5, accs
