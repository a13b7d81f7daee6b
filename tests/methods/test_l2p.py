"""L2P (arXiv 2112.08485): top-N key-matched prompts at the encoder's input; only the selected prompts matter."""

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.evaluation.checkpoint import load_checkpoint, save_checkpoint
from lifelong.methods import make_learner


@pytest.fixture
def cfg(tiny_text_model):
    return {"backbone": str(tiny_text_model), "epochs": 3, "batch_size": 8, "pool_size": 6, "top_n": 2}


def test_the_output_changes_only_through_the_selected_prompts(cfg, token_stream):
    learner = make_learner("l2p", cfg)
    learner.learn(token_stream[0])
    x, _ = token_stream[0].test_tensors()
    q = learner.queries(x)
    idx, _ = learner.prompt.select(q)
    chosen = torch.unique(idx)
    unused = torch.tensor([i for i in range(6) if i not in chosen.tolist()])
    assert len(unused)
    with torch.no_grad():
        base, _ = learner.features(x, q)
        learner.prompt.prompts[unused] += 5.0
        same, _ = learner.features(x, q)
        learner.prompt.prompts[chosen] += 5.0
        moved, _ = learner.features(x, q)
    assert torch.equal(same, base)
    assert (moved - base).abs().max() > 1e-3


def test_prompts_are_picked_by_cosine_to_the_frozen_query_and_keys_are_pulled(cfg, token_stream):
    learner = make_learner("l2p", {**cfg, "epochs": 1})
    learner.prepare((), 4)
    x, _ = token_stream[0].train_tensors()
    q = learner.queries(x)
    with torch.no_grad():
        torch.testing.assert_close(q, learner.backbone(x))  # the frozen encoder, no prompts
    idx, sim = learner.prompt.select(q)
    cos = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(learner.prompt.keys, dim=1).T
    assert torch.equal(idx, cos.topk(2, dim=1).indices)
    _, aux = learner.features(x, q)
    torch.testing.assert_close(aux, -0.1 * sim.sum(1).mean())
    aux.backward()
    grad = learner.prompt.keys.grad
    assert grad[torch.unique(idx)].abs().sum() > 0  # chosen keys get pulled
    unchosen = [i for i in range(6) if i not in idx.unique().tolist()]
    assert grad[unchosen].abs().sum() == 0


def test_checkpoint_round_trip_is_bit_exact(cfg, token_stream, tmp_path):
    learner = make_learner("l2p", cfg)
    learner.learn(token_stream[0])
    save_checkpoint(tmp_path, {"learner": learner.state_dict()}, {"method": "l2p"})
    other = make_learner("l2p", cfg)
    other.load_state_dict(load_checkpoint(tmp_path)[0]["learner"])
    x, _ = token_stream[1].test_tensors()
    assert torch.equal(learner.predict(x), other.predict(x))
    for k, v in learner.prompt.state_dict().items():
        assert torch.equal(v, other.prompt.state_dict()[k])


def test_bad_settings_are_refused(cfg):
    with pytest.raises(ConfigError, match="top_n"):
        make_learner("l2p", {**cfg, "top_n": 7})
    with pytest.raises(ConfigError, match="pool"):
        make_learner("l2p", {**cfg, "pool": "cls"})
