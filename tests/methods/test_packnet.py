"""PackNet (arXiv 1711.05769): per-task magnitude pruning, earlier tasks' weights frozen bit for bit."""

import pytest
import torch

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.layers.packing import PackedMLP, prune_free_by_magnitude
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental, task_incremental

QUICK = {"epochs": 3, "batch_size": 16, "hidden": (32, 32), "lr": 0.05}


@pytest.fixture
def stream():
    data = make_blobs(num_classes=6, per_class=30, dim=8, spread=2.0, seed=1)
    return task_incremental(data, tasks=3, seed=0)


def test_prune_keeps_the_largest_free_weights_and_frees_the_rest():
    w = torch.tensor([[0.5, -3.0, 0.1, 2.0], [-0.2, 1.0, -4.0, 0.05]])
    owner = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.int16)  # two entries owned by task 1
    kept = prune_free_by_magnitude(w, owner, task=2, fraction=0.5)
    assert kept == 3  # half of the 6 free entries
    expected_owner = torch.tensor([[0, 2, 0, 1], [0, 2, 1, 0]], dtype=torch.int16)
    expected_owner[0, 0] = 2  # |0.5| is the third largest free magnitude (after 3.0 and 1.0)
    assert torch.equal(owner, expected_owner)
    # freed entries are zeroed, owned ones untouched
    assert torch.equal(w, torch.tensor([[0.5, -3.0, 0.0, 2.0], [0.0, 1.0, -4.0, 0.0]]))


def test_forward_upto_uses_only_the_weights_of_earlier_tasks():
    torch.manual_seed(0)
    net = PackedMLP(4, (5,), 3)
    net.owner(0)[:, :2] = 1
    net.owner(0)[:, 2:] = 2
    x = torch.randn(6, 4)
    with torch.no_grad():
        only1 = net(x, upto=1)
        net.layers[0].weight[:, 2:] += 100.0  # task 2's weights change: task 1's outputs do not
        assert torch.equal(net(x, upto=1), only1)
        assert not torch.equal(net(x, upto=2), only1)


def test_earlier_tasks_stay_bit_identical(stream):
    net = make_learner("packnet", QUICK, seed=0)
    net.learn(stream[0])
    model = net.model
    owned = [(model.owner(i) == 1).clone() for i in range(2)]
    w_task0 = [layer.weight.detach()[m].clone() for layer, m in zip(model.packed, owned)]
    biases = [layer.bias.detach().clone() for layer in model.layers]
    rows = list(stream[0].classes)
    head0 = model.layers[-1].weight.detach()[rows].clone()
    x0, y0 = stream[0].test_tensors()
    p0 = net.predict(x0, task_id=0)
    assert (p0.argmax(1) == y0).float().mean() > 0.8
    # half of the hidden weights belong to task 0 after pruning
    assert net.model.owned_fraction()[1] == pytest.approx(0.5, abs=1e-3)
    net.learn(stream[1])
    net.learn(stream[2])
    for i, (layer, m, before) in enumerate(zip(net.model.packed, owned, w_task0)):
        assert torch.equal(layer.weight.detach()[m], before)
        assert (net.model.owner(i)[m] == 1).all()
    for layer, b in zip(net.model.packed, biases):
        assert torch.equal(layer.bias.detach(), b)  # hidden biases are fixed after the first task
    assert torch.equal(net.model.layers[-1].weight.detach()[rows], head0)  # task 0's classifier rows
    assert torch.equal(net.model.layers[-1].bias.detach()[rows], biases[-1][rows])
    assert torch.equal(net.predict(x0, task_id=0)[:, : p0.shape[1]], p0)
    # the later tasks got their own weights: 0.5 of the free half, then half of what was left
    frac = net.model.owned_fraction()
    assert frac[2] == pytest.approx(0.25, abs=1e-3) and frac[3] == pytest.approx(0.125, abs=1e-3)


def test_later_tasks_learn_with_the_freed_weights(stream):
    net = make_learner("packnet", QUICK, seed=0)
    for e in stream:
        net.learn(e)
    for t, e in enumerate(stream):
        x, y = e.test_tensors()
        assert (net.predict(x, task_id=t).argmax(1) == y).float().mean() > 0.8


def test_without_a_task_id_it_infers_or_refuses():
    data = make_blobs(num_classes=4, per_class=30, dim=8, spread=2.0, seed=1)
    ci = class_incremental(data, tasks=2, seed=0)
    net = make_learner("packnet", QUICK, seed=0)
    net.learn(ci[0])
    net.learn(ci[1])
    x, _ = ci[1].test_tensors()
    s = net.predict(x)
    assert s.shape == (len(x), 4) and torch.isfinite(s).all()
    strict = make_learner("packnet", {**QUICK, "task_inference": "error"}, seed=0)
    strict.learn(ci[0])
    with pytest.raises(ConfigError, match="task id"):
        strict.predict(x)


def test_a_task_seen_twice_and_bad_settings_raise(stream):
    net = make_learner("packnet", QUICK, seed=0)
    net.learn(stream[0])
    with pytest.raises(ConfigError, match="each task once"):
        net.learn(stream[0])
    with pytest.raises(ConfigError, match="prune"):
        make_learner("packnet", {"prune": 1.0})
    with pytest.raises(ConfigError, match="hidden"):
        make_learner("packnet", {"hidden": ()})


def test_built_for_task_incremental_streams_and_embeddings_defaults_have_a_layer_to_pack():
    from lifelong.methods import get_method
    from lifelong.methods.config import build_config
    from lifelong.methods.packnet import PackNetConfig

    assert get_method("packnet").scenario == "task-incremental"  # the defaults matrix / floor give it task ids
    # the library's embeddings defaults are a linear head (hidden=()), which PackNet refuses: its own keep one layer
    assert build_config(PackNetConfig, data_kind="embeddings").hidden == (256,)
    stream = task_incremental(make_blobs(num_classes=4, per_class=30, dim=8, seed=0), tasks=2, seed=0)
    learner = make_learner("packnet", {"epochs": 1}, seed=0, data_kind="embeddings")
    for e in stream:
        learner.learn(e)
    assert learner.predict(stream[0].test_tensors()[0], task_id=stream[0].task_id).shape[1] > 0
