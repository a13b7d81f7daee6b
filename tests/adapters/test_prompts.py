"""Prompt pools in a text encoder (lifelong.adapters.prompts): prefixes through the stock attention, Gram-Schmidt."""

import pytest
import torch

from lifelong.adapters.prompts import CodaPrompt, PrefixCache, orthogonal_rows, prompted_encode
from lifelong.encoders.text_backbone import TextBackbone
from lifelong.errors import ConfigError


@pytest.fixture
def backbone(tiny_text_model):
    return TextBackbone(str(tiny_text_model), normalize=False, dropout=False).eval()


def _ids():
    return torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14], [15, 16, 0, 0, 0, 0]])


def test_a_prefix_is_what_an_extra_token_gives_the_layer(backbone):
    """Prefix keys/values = key(h), value(h) of tokens h give layer 0 exactly what those tokens as inputs give it."""
    x = _ids()
    torch.manual_seed(0)
    extra = torch.randn(3, 2, 16)
    with torch.no_grad():
        hidden, mask = backbone.embed(x)
        attn = backbone.encoder.encoder.layer[0].attention.self
        keys, values = attn.key(extra), attn.value(extra)
        # as input tokens, run through layer 0 only (stop=1), outputs at the sentence positions
        from lifelong.adapters.prompts import _attention_mask

        joint = torch.cat([hidden, extra], 1)
        jmask = torch.cat([mask, mask.new_ones(3, 2)], 1)
        layer = backbone.encoder.encoder.layer[0]
        as_tokens = layer(joint, _attention_mask(backbone.encoder.config, joint, jmask))[:, : hidden.shape[1]]
        key_mask = torch.cat([mask.new_ones(3, 2), mask], 1)
        as_prefix = layer(
            hidden, _attention_mask(backbone.encoder.config, hidden, key_mask), cache=PrefixCache(keys, values)
        )
    torch.testing.assert_close(as_prefix, as_tokens, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(as_prefix, layer(hidden, _attention_mask(backbone.encoder.config, hidden, mask)))


def test_prompted_encode_without_prompts_is_the_backbone_and_ignores_padding(backbone):
    x = _ids()
    torch.manual_seed(0)
    pre = {1: (torch.randn(3, 4, 16), torch.randn(3, 4, 16))}
    prompts = torch.randn(3, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(prompted_encode(backbone, x), backbone(x))
        a = prompted_encode(backbone, x, input_prompts=prompts, prefixes=pre)
        padded = torch.cat([x, torch.zeros(3, 4, dtype=x.dtype)], 1)
        torch.testing.assert_close(prompted_encode(backbone, padded, input_prompts=prompts, prefixes=pre), a)
        assert (a - backbone(x)).abs().max() > 1e-3  # the prompts reach the output
        assert (prompted_encode(backbone, x, prefixes=pre) - backbone(x)).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="do not exist"):
        prompted_encode(backbone, x, prefixes={2: pre[1]})


def test_orthogonal_rows_are_orthonormal_and_orthogonal_to_the_old_span():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(6, 40)  # not orthogonal (trained components)
    new = orthogonal_rows(old, 5, g)
    assert (new @ old.T).abs().max() < 1e-5
    torch.testing.assert_close(new @ new.T, torch.eye(5), rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="orthogonal"):
        orthogonal_rows(old, 35, g)


def test_coda_composes_only_begun_components_and_freezes_earlier_ones():
    g = torch.Generator().manual_seed(0)
    pool = CodaPrompt((0, 1), pool=6, length=4, tasks=3, dim=16, key_dim=16)
    params = pool.begin_task(0, g)
    assert [tuple(p.shape) for p in params] == [(2, 2, 4, 16), (2, 2, 16), (2, 2, 16)]
    q = torch.randn(5, 16)
    pre, _ = pool.prefixes(q)
    assert pre[0][0].shape == (5, 2, 16) and pre[1][1].shape == (5, 2, 16)
    (pre[0][0].sum() + pre[1][1].sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    pool.end_task()
    before = {k: v.clone() for k, v in pool.state_dict().items()}
    with torch.no_grad():
        pool.components[:, 2:].normal_()  # components of tasks not begun do not matter
    after, _ = pool.prefixes(q)
    torch.testing.assert_close(after[0][0], pre[0][0].detach())
    pool.begin_task(1, g)
    for k in ("components", "keys", "attention"):
        assert torch.equal(pool.state_dict()[k][:, :2], before[k][:, :2])
