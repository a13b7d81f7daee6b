"""Adapters inside a BERT-style encoder (AdaptFormer, SSF, VPT-deep, finetune, LoRA) and the TextBackbone loop."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from lifelong.adapters.encoder import (
    EncoderAdapterConfig,
    add_encoder_adapter,
    encoder_adapter_state,
    load_encoder_adapter_state,
)
from lifelong.encoders.text_backbone import (
    EncodeMemo,
    TextBackbone,
    check_token_ids,
    encode_tokens,
    length_batches,
)
from lifelong.errors import ConfigError, DataError


@pytest.fixture
def ids():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(5, 23, (12, 8), generator=g).float()
    x[:, 0] = 2
    for i in range(12):  # right padding, lengths 3..8
        x[i, 3 + i % 6 :] = 0
    return x


def _backbone(path, kind=None, **kw):
    b = TextBackbone(path, dropout=False).eval()
    params = None
    if kind is not None:
        params = add_encoder_adapter(
            b, EncoderAdapterConfig(kind=kind, **kw), generator=torch.Generator().manual_seed(1)
        )
    return b, params


def test_own_layer_loop_matches_the_model_forward(tiny_text_model, ids):
    b, _ = _backbone(tiny_text_model)
    with torch.no_grad():
        mask = ids != 0
        w = int(mask.sum(1).max())
        ref = b.encoder(input_ids=ids[:, :w].long(), attention_mask=mask[:, :w].long()).last_hidden_state
        m = mask[:, :w].unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((ref * m).sum(1) / m.sum(1), dim=1)
        torch.testing.assert_close(b(ids), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.top(*b.bottom(ids, 1), 1), b(ids), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["adaptformer", "vpt", "lora"])
def test_zero_initialised_kinds_start_near_the_pretrained_function(tiny_text_model, ids, kind):
    base, _ = _backbone(tiny_text_model)
    adapted, params = _backbone(tiny_text_model, kind)
    assert params and all(p.requires_grad for p in params)
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable == adapted.adapter_names
    with torch.no_grad():
        diff = (adapted(ids) - base(ids)).abs().max()
    # AdaptFormer's up-projection and LoRA's B start at zero: exactly the same function; zero VPT prompts
    # still take a share of the attention
    assert diff == 0 if kind != "vpt" else diff < 0.05


def test_ssf_wraps_every_linear_and_layernorm(tiny_text_model):
    b, params = _backbone(tiny_text_model, "ssf")
    linears = 6 * 2  # q, k, v, attention output, intermediate, output per layer
    norms = 2 * 2 + 1  # two per layer + the embeddings'
    assert len(params) == 2 * (linears + norms)
    scales = [p for n, p in b.named_parameters() if n.endswith(".scale")]
    assert all(abs(float(s.detach().mean()) - 1.0) < 0.05 for s in scales)


def test_finetune_top_layers_and_all(tiny_text_model):
    _, top = _backbone(tiny_text_model, "finetune", top_layers=1)
    b, everything = _backbone(tiny_text_model, "finetune")
    assert sum(p.numel() for p in top) < sum(p.numel() for p in everything) == sum(p.numel() for p in b.parameters())
    assert set(encoder_adapter_state(b)) == set(b.state_dict())


@pytest.mark.parametrize("kind", ["adaptformer", "ssf", "vpt", "lora"])
def test_state_round_trips_through_safetensors_bit_exact(tiny_text_model, ids, kind, tmp_path):
    b, params = _backbone(tiny_text_model, kind)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.1)
    save_file(encoder_adapter_state(b), str(tmp_path / "a.safetensors"))
    other, _ = _backbone(tiny_text_model, kind)
    load_encoder_adapter_state(other, load_file(str(tmp_path / "a.safetensors")))
    with torch.no_grad():
        assert torch.equal(other(ids), b(ids))
    with pytest.raises(ConfigError, match="does not fit"):
        load_encoder_adapter_state(other, {"nothing.here": torch.zeros(1)})


def test_errors(tiny_text_model):
    with pytest.raises(ConfigError, match="must be one of"):
        EncoderAdapterConfig(kind="prefix").validate()
    b, _ = _backbone(tiny_text_model, "ssf")
    with pytest.raises(ConfigError, match="already holds"):
        add_encoder_adapter(b, EncoderAdapterConfig(kind="adaptformer"))

    class NotBert(torch.nn.Module):
        encoder = torch.nn.Linear(2, 2)

    holder = torch.nn.Module()
    holder.encoder = NotBert()
    with pytest.raises(ConfigError, match="BERT-style"):
        add_encoder_adapter(holder, EncoderAdapterConfig(kind="adaptformer"))


def test_length_batches_cover_every_row_once_and_group_lengths(ids):
    lengths = (ids != 0).sum(1)
    sorted_batches = length_batches(ids, 4)
    assert sorted(torch.cat(sorted_batches).tolist()) == list(range(12))
    assert all(lengths[b].max() - lengths[b].min() <= 2 for b in sorted_batches)
    shuffled = length_batches(ids, 4, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.cat(shuffled).tolist()) == list(range(12))
    again = length_batches(ids, 4, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again))
    with pytest.raises(ValueError, match="batch_size"):
        length_batches(ids, 0)


def test_encode_tokens_keeps_the_input_order_and_memo_encodes_once(tiny_text_model, ids):
    b, _ = _backbone(tiny_text_model)
    with torch.no_grad():
        torch.testing.assert_close(encode_tokens(b, ids, batch_size=5), b(ids), rtol=1e-5, atol=1e-6)
    memo, calls = EncodeMemo(size=2), []

    def fn(t):
        calls.append(1)
        return t.sum(1)

    memo("m", ids, fn)
    memo("m", ids.clone(), fn)
    assert len(calls) == 1  # same contents: computed once
    memo("other", ids, fn)
    memo("m", ids[:3], fn)
    memo("m", ids, fn)  # evicted (size 2): computed again
    assert len(calls) == 4


def test_check_token_ids():
    check_token_ids(torch.tensor([[2.0, 5.0, 0.0]]), 23, "m")
    with pytest.raises(DataError, match="not token ids"):
        check_token_ids(torch.tensor([[0.5, 1.0]]), 23, "m")
    with pytest.raises(DataError, match="outside the backbone's vocabulary"):
        check_token_ids(torch.tensor([[2.0, 40.0]]), 23, "m")


def test_bf16_encoding_stays_close_to_fp32(tiny_text_model, ids):
    b, _ = _backbone(tiny_text_model)
    fp32 = encode_tokens(b, ids)
    bf16 = encode_tokens(b, ids, precision="bf16")
    assert bf16.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(fp32, bf16).min() > 0.99
    with pytest.raises(ConfigError, match="precision"):
        encode_tokens(b, ids, precision="fp8")
