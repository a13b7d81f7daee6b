"""APER / ADAM (arXiv 2303.07338): adapt inside the encoder on the first experience only, then prototypes."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import CheckpointError, ConfigError, DataError
from lifelong.methods import make_learner

KINDS = ["adaptformer", "ssf", "vpt", "lora", "finetune"]


@pytest.fixture
def cfg(tiny_text_model):
    return {"backbone": str(tiny_text_model), "epochs": 4, "batch_size": 8, "lr": 0.5}


def _state(learner):
    return {n: p.detach().clone() for n, p in learner.tuned.named_parameters()}


@pytest.mark.parametrize("kind", KINDS)
def test_adapts_inside_the_encoder_on_the_first_experience_only(cfg, token_stream, kind):
    learner = make_learner("aper", {**cfg, "adapter": kind, "lr": {"finetune": 0.05, "ssf": 0.1}.get(kind, 0.5)})
    learner.learn(token_stream[0])
    assert learner.adapted and len(learner.adaptation_losses) == 4
    assert learner.adaptation_losses[-1] < learner.adaptation_losses[0]  # it trained
    x, _ = token_stream[0].test_tensors()
    with torch.no_grad():
        assert not torch.allclose(learner.tuned(x), learner.ptm(x), atol=1e-4)  # the encoder's output changed
    pre = dict(learner.ptm.named_parameters())
    if kind != "finetune":  # the pre-trained weights stay as they were; only the adapter's are new
        wrapped = {
            n.replace(".base_layer.", ".").replace(".base.", "."): p for n, p in learner.tuned.named_parameters()
        }
        assert set(pre) <= set(wrapped)
        assert all(torch.equal(wrapped[n], p) for n, p in pre.items())
    frozen = _state(learner)
    learner.learn(token_stream[1])
    assert len(learner.adaptation_losses) == 4  # no further adaptation
    assert all(torch.equal(frozen[n], p) for n, p in learner.tuned.named_parameters())


def test_prototypes_are_class_means_of_the_merged_embedding(cfg, token_stream):
    learner = make_learner("aper", cfg)
    for e in token_stream:
        learner.learn(e)
    x = torch.cat([e.train_tensors()[0] for e in token_stream])
    y = torch.cat([e.train_tensors()[1] for e in token_stream])
    with torch.no_grad():
        merged = torch.cat([learner.ptm(x), learner.tuned(x)], dim=1)
    means = torch.stack([merged[y == c].double().mean(0) for c in range(4)])
    torch.testing.assert_close(learner.prototypes(), means, rtol=1e-4, atol=1e-5)
    xt, _ = token_stream[0].test_tensors()
    with torch.no_grad():
        ft = torch.cat([learner.ptm(xt), learner.tuned(xt)], dim=1).double()
    expected = F.normalize(ft, dim=1) @ F.normalize(means, dim=1).T
    torch.testing.assert_close(learner.predict(xt), expected.float(), rtol=1e-4, atol=1e-4)
    adapted_only = make_learner("aper", {**cfg, "merge": "adapted"})
    for e in token_stream:
        adapted_only.learn(e)
    assert adapted_only.features(xt).shape[1] == learner.features(xt).shape[1] // 2


def test_vpt_prompts_join_every_layer_and_pooling_ignores_them(cfg, token_stream):
    learner = make_learner("aper", {**cfg, "adapter": "vpt", "prompts": 3, "epochs": 0})
    learner.learn(token_stream[0])
    tuned = learner.tuned
    assert tuned.prompts.tokens.shape == (2, 3, 16)
    x, _ = token_stream[0].test_tensors()
    with torch.no_grad():
        base = tuned(x)
        for layer in range(2):  # each layer's own prompts reach the output
            tuned.prompts.tokens.zero_()
            tuned.prompts.tokens[layer].normal_(std=50.0)
            assert (tuned(x) - base).abs().max() > 1e-3
        padded = torch.cat([x, torch.zeros(len(x), 5)], dim=1)  # padding changes nothing
        torch.testing.assert_close(tuned(padded), tuned(x), rtol=1e-5, atol=1e-6)
        hidden, mask = tuned.embed(x)  # pooled = mean over the real tokens only (no prompt position)
        out = tuned.run_layers(hidden, mask)
        assert out.shape[1] == mask.shape[1]
        m = mask.unsqueeze(-1).float()
        torch.testing.assert_close(tuned(x), F.normalize((out * m).sum(1) / m.sum(1), dim=1))


def test_config_input_and_checkpoint_errors(cfg, token_stream):
    with pytest.raises(ConfigError, match="adapter must be one of"):
        make_learner("aper", {"adapter": "prefix"})
    with pytest.raises(ConfigError, match="merge"):
        make_learner("aper", {"merge": "sum"})
    learner = make_learner("aper", cfg)
    learner.learn(token_stream[0])
    with pytest.raises(DataError, match="token ids"):
        learner.predict(torch.rand(3, 6))
    state = learner.state_dict()
    state["adapter"] = {"encoder.nothing": torch.zeros(2)}
    other = make_learner("aper", cfg)
    with pytest.raises(CheckpointError, match="aper"):
        other.load_state_dict(state)
    assert other.tuned is None  # unchanged


def test_lr_zero_means_the_kinds_tuned_default():
    from lifelong.methods.aper import TUNED_LR

    assert make_learner("aper", {"adapter": "finetune"}).config.adaptation_lr == TUNED_LR["finetune"] == 0.01
    assert make_learner("aper", {"adapter": "ssf", "lr": 0.2}).config.adaptation_lr == 0.2
    with pytest.raises(ConfigError, match="lr must be > 0"):
        make_learner("aper", {"lr": -1.0})
