"""The structural-ICL part-of-speech task (arXiv 2406.00053) and the embedding-forgetting hook."""

from __future__ import annotations

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.incontext.forgetting import EmbeddingReset
from lifelong.incontext.models import PromptTransformer
from lifelong.incontext.tasks.dual_process import DualProcessTask


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _roles(task: DualProcessTask, xs: torch.Tensor) -> torch.Tensor:
    """Structural truth: 1 when the query is the word in the adjective slot (after / two after the copula)."""
    cop_first = xs[:, 0] == task.cop
    adj_slot = torch.where(cop_first, xs[:, 1], xs[:, 2])
    return (xs[:, 3] == adj_slot).long()


@pytest.mark.parametrize("mode", ["train", "holdout", "switch", "tail", "tail_switch"])
def test_target_is_the_querys_slot_in_the_sentence(mode):
    task = DualProcessTask(vocab=200, zipf=1.2, prop_amb=0.1, mode=mode)
    p = task.sample(1000, _g())
    xs = p.xs
    assert xs.shape == (1000, 4) and xs.dtype == torch.long and p.num_labels == 2
    assert ((xs[:, 0] == task.cop) | (xs[:, 1] == task.cop)).all()
    words = torch.where((xs[:, 0] == task.cop)[:, None], xs[:, 1:3], xs[:, [0, 2]])
    assert (words[:, 0] != words[:, 1]).all()  # the two words of a sentence differ
    assert ((xs[:, 3] == words[:, 0]) | (xs[:, 3] == words[:, 1])).all()  # the query is one of them
    assert torch.equal(p.ys[:, -1], _roles(task, xs))
    assert 0.4 < p.ys[:, -1].float().mean() < 0.6 and p.extra["loss_mask"][:, -1].all()


def test_held_out_tokens_never_occur_in_training_and_only_in_holdout():
    task = DualProcessTask(vocab=200)
    held = task.holdout_tokens
    assert len(held) == 20 and held.min() == task.cop + 1 and held.max() == task.num_tokens - 1
    train = task.sample(5000, _g(1)).xs
    assert not torch.isin(train, held).any()
    hold = task.with_mode("holdout").sample(500, _g(2))
    words = hold.xs[hold.xs != task.cop]
    assert torch.isin(words, held).all() and (hold.extra["query_rank"] == -1).all()


def test_zipf_makes_frequent_tokens_frequent_and_switch_swaps_roles():
    task = DualProcessTask(vocab=200, zipf=1.2, prop_amb=0.0)
    p = task.sample(20000, _g(3))
    nouns = p.xs[(p.xs < 100)]
    counts = torch.bincount(nouns, minlength=100).float()
    assert counts[0] > 5 * counts[50]  # rank 1 vs rank 51: (51)^1.2 ~ 112x expected
    # without ambiguity the noun slot holds nouns (ids < vocab/2); in switch mode it holds adjectives
    s = task.with_mode("switch").sample(1000, _g(4)).xs
    noun_slot = torch.where(s[:, 0] == task.cop, s[:, 2], s[:, 0])
    assert (noun_slot >= 100).all()
    tail = task.with_mode("tail").sample(500, _g(5))
    assert (tail.extra["query_rank"] >= 90).all()


def test_ambiguous_tokens_take_both_roles_in_training():
    task = DualProcessTask(vocab=200, zipf=0.0, prop_amb=0.1)
    assert len(task.amb_nouns) == 10 and len(task.amb_adjs) == 10
    p = task.sample(20000, _g(6)).xs
    noun_slot = torch.where(p[:, 0] == task.cop, p[:, 2], p[:, 0])
    amb_adj_in_noun_slot = torch.isin(noun_slot, task.amb_adjs)
    assert amb_adj_in_noun_slot.any()
    assert not (torch.isin(noun_slot, torch.arange(100, 200)) & ~amb_adj_in_noun_slot).any()


def test_bad_settings_stop():
    with pytest.raises(ConfigError):
        DualProcessTask(vocab=11)
    with pytest.raises(ConfigError):
        DualProcessTask(mode="nope")


def test_embedding_reset_follows_its_schedule_and_clears_adam_state():
    model = PromptTransformer(1, 2, "classes", d_model=8, layers=1, heads=1, tokens="paired", x_vocab=30, max_points=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    p = DualProcessTask(vocab=20, holdout=9).sample(16, _g(7))
    model(p)[:, -1].sum().backward()
    opt.step()
    hook = EmbeddingReset(every=10, until=25)
    assert [s for s in range(1, 40) if hook.due(s)] == [10, 20]
    before_emb = model.x_in.weight.detach().clone()
    before_other = model.blocks[0].attn.in_proj_weight.detach().clone()
    hook(model, 9, optimizer=opt)
    assert torch.equal(model.x_in.weight, before_emb) and model.x_in.weight in opt.state
    hook(model, 10, optimizer=opt)
    assert not torch.allclose(model.x_in.weight, before_emb)  # re-drawn
    assert torch.equal(model.blocks[0].attn.in_proj_weight, before_other)  # nothing else touched
    assert model.x_in.weight not in opt.state and model.blocks[0].attn.in_proj_weight in opt.state
    assert hook.resets == [10]
    assert not EmbeddingReset(every=0).due(10)  # the vanilla arm never resets
