"""Induction-head probes on hand-built attention maps, and the rise time of a learning curve."""

from __future__ import annotations

import pytest
import torch

from lifelong.errors import DataError
from lifelong.incontext.attention_probes import (
    induction_probe,
    induction_scores,
    matching_label_attention,
    previous_token_attention,
    rise,
)
from lifelong.incontext.models import PromptTransformer
from lifelong.incontext.tasks.bursty import BurstyClassification


def _maps(classes: torch.Tensor, induction: float, previous: float) -> list[torch.Tensor]:
    """Two layers of one head over interleaved tokens: layer 1 puts ``previous`` on the token before each label
    token, layer 2 puts ``induction`` of the query's row on the labels after its class's exemplars."""
    b, n1 = classes.shape
    n, t = n1 - 1, 2 * n1 - 1
    causal = torch.ones(t, t).tril()
    uniform = (causal / causal.sum(1, keepdim=True)).expand(b, 1, t, t).clone()
    first = uniform.clone()
    for i in range(n):
        lab = 2 * i + 1
        first[:, 0, lab, :] = (1 - previous) / lab if lab > 0 else 0.0
        first[:, 0, lab, lab + 1 :] = 0
        first[:, 0, lab, lab - 1] = previous
    second = uniform.clone()
    match = classes[:, :-1] == classes[:, -1:]
    q = 2 * n
    for j in range(b):
        labels = torch.arange(n)[match[j]] * 2 + 1
        row = torch.full((t,), (1 - induction) / (t - len(labels)))
        row[labels] = induction / len(labels)
        second[j, 0, q] = row
    return [first, second]


def test_hand_built_induction_head_is_measured_exactly():
    classes = torch.tensor([[0, 1, 0, 1, 0], [2, 2, 3, 3, 3]])  # N = 4; query classes 0 and 3
    maps = _maps(classes, induction=0.7, previous=0.9)
    assert torch.allclose(maps[1].sum(-1), torch.ones(2, 1, 9))  # rows are distributions
    s = induction_scores(maps, classes)
    assert s["induction"] == pytest.approx(0.7) and s["previous_token"] == pytest.approx(0.9)
    assert s["prompts"] == 2 and s["chance"] == pytest.approx(2 / 9)
    # attention on the *items* of the matching class, or on other labels, does not count
    m = matching_label_attention(maps[1], 8, torch.tensor([1, 3, 5, 7]), torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0]]))
    assert torch.allclose(m, torch.zeros(2, 1))
    assert torch.allclose(previous_token_attention(maps[0], torch.tensor([1, 3])), torch.full((2, 1), 0.9))


def test_uniform_attention_scores_chance_and_prompts_without_a_match_are_skipped():
    classes = torch.tensor([[0, 1, 2, 3, 1], [0, 1, 2, 3, 9]])  # the second prompt has no exemplar of class 9
    maps = _maps(classes[:1], induction=1 / 9, previous=1 / 2)
    maps = [torch.cat([m, m]) for m in maps]
    s = induction_scores(maps, classes)
    assert s["prompts"] == 1 and s["induction"] == pytest.approx(s["chance"])
    with pytest.raises(DataError):
        induction_scores(maps, torch.tensor([[0, 1, 2, 3, 8], [0, 1, 2, 3, 9]]))


def test_probe_reads_a_real_model_and_returns_per_head_scores():
    world = BurstyClassification(num_classes=16, num_labels=8, dim=8, context=4, burstiness=2)
    p = world.with_mode("icl").sample(32, torch.Generator().manual_seed(0))
    model = PromptTransformer(8, 8, "classes", d_model=16, layers=2, heads=2, attention_only=True, max_points=5)
    s = induction_probe(model, p)
    assert len(s["induction_heads"]) == 2 and 0.0 <= s["induction"] <= 1.0 and s["prompts"] == 32
    assert s["induction"] == max(s["induction_heads"])


def test_rise_times_the_jump_and_ignores_the_plateau():
    steps = [0, 100, 200, 300, 400, 500]
    values = [0.0, 0.1, 0.1, 0.15, 0.95, 1.0]  # plateau, then a jump between 300 and 400
    r = rise(steps, values, 0.2, 0.8)
    assert r["start"] == pytest.approx(300 + 0.05 / 0.8 * 100)
    assert r["end"] == pytest.approx(300 + 0.65 / 0.8 * 100)
    assert r["fraction"] == pytest.approx(r["steps"] / 500)
    slow = rise(steps, [0.0, 0.2, 0.4, 0.6, 0.8, 0.9], 0.2, 0.8)
    assert slow["steps"] == pytest.approx(300) and slow["fraction"] == pytest.approx(0.6)
    assert rise(steps, [0.0] * 6, 0.2, 0.8)["end"] is None
    # a dip below lo before the final climb restarts the clock
    dip = rise([0, 1, 2, 3, 4], [0.5, 0.1, 0.5, 0.1, 0.9], 0.2, 0.8)
    assert dip["start"] == pytest.approx(3 + 0.1 / 0.8)
