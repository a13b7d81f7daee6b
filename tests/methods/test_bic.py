"""BiC (arXiv 1905.13260): the bias-correction layer, the held-out validation split, the distillation weight."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.heads.bias_correction import BiasCorrection
from lifelong.methods import make_learner
from lifelong.methods.base import GradientLearner
from lifelong.scenarios import class_incremental


@pytest.fixture(scope="module")
def stream():
    return class_incremental(make_blobs(num_classes=6, per_class=40, dim=8, seed=2), tasks=3, seed=0)


def test_bias_layer_undoes_a_bias_towards_new_classes():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (200,), generator=g)
    logits = F.one_hot(y, 5).float() * 2 + torch.randn(200, 5, generator=g)
    logits[:, 2:4] += 3.0  # classes 2, 3 (new) inflated; column 4 is not visible
    group = torch.tensor([False, False, True, True, False])
    visible = torch.tensor([True, True, True, True, False])
    bias = BiasCorrection(5)
    acc_before = (logits[:, :4].argmax(1) == y).float().mean()
    a, b = bias.fit_group(logits, y, group, visible, steps=500, lr=0.05)
    corrected = bias(logits)
    assert b < -1.0  # it learned to pull the new classes down
    assert (corrected[:, :4].argmax(1) == y).float().mean() > acc_before + 0.2
    assert bias.alpha[[0, 1, 4]].tolist() == [1.0, 1.0, 1.0] and bias.beta[[0, 1, 4]].tolist() == [0.0, 0.0, 0.0]
    assert bias.alpha[2] == bias.alpha[3] == pytest.approx(a)


def test_validation_part_is_held_out_of_training(stream, monkeypatch):
    seen = {}
    original = GradientLearner.fit

    def spy(self, x, y, experience):
        seen[experience.index] = x.clone()
        return original(self, x, y, experience)

    monkeypatch.setattr(GradientLearner, "fit", spy)
    learner = make_learner("bic", {"buffer_size": 40, "epochs": 1, "val_fraction": 0.25}, seed=0)
    learner.learn(stream[0])
    assert learner.bias.alpha.tolist() == [1.0] * 6  # no correction after the first experience
    n0 = len(stream[0].train_tensors()[1])
    assert len(seen[0]) == n0  # nothing held out on the first experience
    val_sizes = {}
    orig_after = learner.after_experience

    def record(exp):
        val_sizes["val"] = learner._val
        orig_after(exp)

    learner.after_experience = record
    learner.learn(stream[1])
    vx, vy = val_sizes["val"]
    # m = 40 // 2 = 20 exemplars per old class -> 5 held out per class, old and new alike
    assert torch.bincount(vy, minlength=6)[:4].tolist() == [5, 5, 5, 5]
    trained = seen[1]
    assert not (torch.cdist(vx, trained) == 0).any()  # no held-out example was trained on
    assert len(trained) == len(stream[1].train_tensors()[1]) + 40 - 20


def test_loss_weights_distillation_by_old_over_seen(stream):
    learner = make_learner("bic", {"epochs": 1}, seed=0)
    learner.learn(stream[0])
    learner.classes.observe(stream[1], stream[1].train_tensors()[1])
    learner.before_experience(stream[1])
    with torch.no_grad():
        learner.model.head.weight.add_(0.3)
    x, y = stream[1].train_tensors()
    x, y = x[:16], y[:16]
    with torch.no_grad():
        out, t = learner.model(x)[:, :4], learner.teacher(x)[:, :2]
    ce = F.cross_entropy(out, y)
    kd = -(F.softmax(t / 2, 1) * F.log_softmax(out[:, :2] / 2, 1)).sum(1).mean()
    torch.testing.assert_close(learner.loss(x, y, stream[1]), 0.5 * ce + 0.5 * 4 * kd)  # lambda = 2 / 4


def test_bad_settings():
    with pytest.raises(ConfigError, match="val_fraction"):
        make_learner("bic", {"val_fraction": 1.0})
    with pytest.raises(ConfigError, match="temperature"):
        make_learner("bic", {"temperature": 0.0})


def test_no_bias_fit_without_old_classes_in_the_held_out_part(stream):
    # one exemplar per old class: none can be held out, so the validation part has only new classes;
    # fitting on it would only raise the new classes' logits (it wiped out CLINC150's old classes)
    small = class_incremental(make_blobs(num_classes=3, per_class=40, dim=8, seed=2), increments=[2, 1], seed=0)
    learner = make_learner("bic", {"buffer_size": 3, "epochs": 1}, seed=0)
    learner.learn(small[0])
    learner.learn(small[1])
    assert learner.bias.alpha.tolist() == [1.0] * 3 and learner.bias.beta.tolist() == [0.0] * 3
    learner = make_learner("bic", {"buffer_size": 40, "epochs": 1}, seed=0)  # old classes held out: it fits
    learner.learn(stream[0])
    learner.learn(stream[1])
    assert learner.bias.alpha[2:4].tolist() != [1.0, 1.0]


def test_embeddings_defaults_keep_the_shared_memory_budget():
    from lifelong.methods.bic import BiCConfig
    from lifelong.methods.config import build_config
    from lifelong.methods.er import ERConfig

    c = build_config(BiCConfig, data_kind="embeddings")
    assert c.hidden == () and c.lr == 0.1
    # equal memory with the other replay methods under `lifelong run` (a larger one is the user's choice)
    assert c.buffer_size == build_config(ERConfig, data_kind="embeddings").buffer_size
