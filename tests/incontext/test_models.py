"""Prompt models: causality (prediction i never reads y_i or anything later), shapes by kind, attention maps."""

import pytest
import torch

from lifelong.errors import ConfigError, DataError
from lifelong.incontext import PromptLSTM, Prompts, PromptTransformer


def _prompts(kind: str, b: int = 3, n: int = 6, d: int = 4, labels: int = 5, seed: int = 0) -> Prompts:
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(b, n, d, generator=g)
    if kind == "regression":
        return Prompts(xs, torch.randn(b, n, generator=g), kind)
    if kind == "binary":
        return Prompts(xs, torch.randint(0, 2, (b, n), generator=g).float() * 2 - 1, kind)
    return Prompts(xs, torch.randint(0, labels, (b, n), generator=g), kind, num_labels=labels)


def _models(kind: str, d: int = 4, labels: int = 5):
    d_out = labels if kind == "classes" else 1
    torch.manual_seed(0)
    return [
        PromptTransformer(d, d_out, kind, d_model=16, layers=2, heads=2, max_points=8),
        PromptTransformer(d, d_out, kind, d_model=16, layers=2, heads=2, max_points=8, attention_only=True),
        PromptTransformer(d, d_out, kind, d_model=16, layers=1, heads=2, max_points=8, tokens="paired"),
        PromptTransformer(d, d_out, kind, d_model=16, layers=1, heads=2, positional="none", readout_hidden=8),
        PromptLSTM(d, d_out, kind, d_model=16, hidden=12),
    ]


@pytest.mark.parametrize("kind", ["regression", "binary", "classes"])
def test_prediction_i_reads_only_earlier_examples_and_x_i(kind):
    p = _prompts(kind)
    for model in _models(kind):
        model.eval()
        base = model(p)
        i = 3
        changed_y = Prompts(p.xs.clone(), p.ys.clone(), kind, p.num_labels)
        changed_y.ys[:, i] = (p.ys[:, i] + 1) % 5 if kind == "classes" else -p.ys[:, i] + 7.0
        changed_later = Prompts(p.xs.clone(), p.ys.clone(), kind, p.num_labels)
        changed_later.xs[:, i + 1 :] += 3.0
        changed_x = Prompts(p.xs.clone(), p.ys, kind, p.num_labels)
        changed_x.xs[:, i] += 1.0
        for other in (changed_y, changed_later):
            out = model(other)
            torch.testing.assert_close(out[:, : i + 1], base[:, : i + 1])  # y_i and later points never read
        assert not torch.allclose(model(changed_y)[:, i + 1], base[:, i + 1])  # y_i is read by prediction i + 1
        assert not torch.allclose(model(changed_x)[:, i], base[:, i])  # x_i is read by prediction i


@pytest.mark.parametrize("kind", ["regression", "binary", "classes"])
def test_output_shapes(kind):
    p = _prompts(kind)
    for model in _models(kind):
        out = model(p)
        assert out.shape == ((3, 6, 5) if kind == "classes" else (3, 6))


def test_attention_maps_are_causal_row_stochastic():
    p = _prompts("regression")
    model = PromptTransformer(4, 1, "regression", d_model=16, layers=3, heads=2, max_points=8)
    out, maps = model(p, return_attention=True)
    assert len(maps) == 3 and maps[0].shape == (3, 2, 11, 11)  # 2n - 1 tokens
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(3, 2, 11))
        assert torch.all(m.triu(1) == 0)
    torch.testing.assert_close(out, model(p))


def test_token_id_inputs_and_bad_inputs():
    model = PromptTransformer(1, 4, "classes", d_model=16, heads=2, x_vocab=20, max_points=8)
    ids = torch.randint(0, 20, (2, 5))
    out = model(Prompts(ids, torch.randint(0, 4, (2, 5)), "classes", num_labels=4))
    assert out.shape == (2, 5, 4)
    assert model.input_embeddings()[0].weight.shape == (20, 16)
    with pytest.raises(DataError):
        model(_prompts("regression"))
    with pytest.raises(DataError):  # longer than max_points
        PromptTransformer(4, max_points=4)(_prompts("regression", n=6))
    with pytest.raises(ConfigError):
        PromptTransformer(4, 3, "regression")
    with pytest.raises(ConfigError):
        PromptLSTM(4)(_prompts("regression"), return_attention=True)
