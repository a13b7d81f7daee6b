"""Attention probes for induction heads and statistics of learning curves (the abrupt transition).

For in-context classification prompts ``x_1, l_1, ..., x_N, l_N, x_q`` read by :class:`PromptTransformer` with
interleaved tokens (``x_i`` at token ``2i``, ``l_i`` at ``2i + 1``, the query at ``2N``), an induction head in the
last layer attends from the query to the label tokens that follow the exemplars of the query's class; the first
layer's previous-token head attends from each label token to the item before it (*The mechanistic basis of data
dependence and abrupt learning in an in-context classification task*, arXiv 2312.03002). :func:`rise` measures how
fast a curve climbs from one level to another.
"""

from __future__ import annotations

import torch

from lifelong.errors import DataError
from lifelong.incontext.prompts import Prompts

__all__ = ["matching_label_attention", "previous_token_attention", "induction_scores", "induction_probe", "rise"]


def matching_label_attention(
    attn: torch.Tensor, query_pos: int, label_pos: torch.Tensor, match: torch.Tensor
) -> torch.Tensor:
    """Attention mass ``[B, heads]`` from token ``query_pos`` onto the tokens ``label_pos`` where ``match``.

    Args:
        attn: one layer's attention ``[B, heads, T, T]`` (rows: from, columns: to; rows sum to 1).
        query_pos: the reading token.
        label_pos: ``[n]`` token indices of the label tokens.
        match: ``[B, n]`` bool, which label tokens count (those after an exemplar of the query's class).
    """
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise DataError(f"attention must be [B, heads, T, T], got {tuple(attn.shape)}")
    if match.shape != (attn.shape[0], len(label_pos)):
        raise DataError(f"match must be [B, {len(label_pos)}], got {tuple(match.shape)}")
    row = attn[:, :, query_pos, :][:, :, label_pos]  # [B, H, n]
    return (row * match[:, None, :].to(row.dtype)).sum(-1)


def previous_token_attention(attn: torch.Tensor, from_pos: torch.Tensor) -> torch.Tensor:
    """Mean attention ``[B, heads]`` from each token of ``from_pos`` onto the token just before it."""
    from_pos = torch.as_tensor(from_pos)
    if (from_pos < 1).any():
        raise DataError("previous-token attention needs from_pos >= 1")
    return attn[:, :, from_pos, from_pos - 1].mean(-1)


def induction_scores(maps: list[torch.Tensor], classes: torch.Tensor) -> dict:
    """Induction-head statistics from a :class:`PromptTransformer`'s attention ``maps`` (interleaved tokens).

    ``classes`` ``[B, n]`` are the points' classes (the query last); prompts without an exemplar of the query's class
    in context are left out. Returns floats: ``induction`` (the best last-layer head's mean attention from the query
    to the label tokens after the query's class's exemplars), ``induction_heads`` (each head's), ``chance`` (what
    uniform attention over the query's visible tokens would give), ``previous_token`` (the best first-layer head's
    mean attention from a label token to its item) and ``prompts`` (how many were probed).
    """
    match = classes[:, :-1] == classes[:, -1:]
    keep = match.any(dim=1)
    if not keep.any():
        raise DataError("no prompt has an exemplar of the query's class in context")
    match = match[keep]
    n = classes.shape[1] - 1
    if maps[-1].shape[-1] != 2 * n + 1:
        t = maps[-1].shape[-1]
        raise DataError(f"maps cover {t} tokens; interleaved prompts of {n + 1} points need {2 * n + 1}")
    label_pos = torch.arange(n) * 2 + 1
    query_pos = 2 * n
    per_head = matching_label_attention(maps[-1][keep], query_pos, label_pos, match).mean(0)
    prev = previous_token_attention(maps[0][keep], label_pos).mean(0)
    chance = (match.sum(1).float() / (query_pos + 1)).mean()
    return {
        "induction": float(per_head.max()),
        "induction_heads": [float(v) for v in per_head],
        "chance": float(chance),
        "previous_token": float(prev.max()),
        "prompts": int(keep.sum()),
    }


@torch.no_grad()
def induction_probe(model: torch.nn.Module, prompts: Prompts, classes: torch.Tensor | None = None) -> dict:
    """:func:`induction_scores` of ``model`` (a :class:`PromptTransformer` with interleaved tokens) on ``prompts``.

    ``classes`` defaults to ``prompts.extra["classes"]`` (as the bursty sampler tags them).
    """
    if getattr(model, "tokens", "interleaved") != "interleaved":
        raise DataError("induction_probe reads interleaved x/y tokens (PromptTransformer(tokens='interleaved'))")
    classes = prompts.extra["classes"] if classes is None else classes
    was = model.training
    model.eval()
    _, maps = model(prompts, return_attention=True)
    model.train(was)
    return induction_scores(maps, classes)


def _crossing(steps: list[float], values: list[float], level: float, start: int) -> float | None:
    """Linear-interpolated step of the first upward crossing of ``level`` at or after index ``start``."""
    for i in range(max(start, 1), len(values)):
        if values[i] >= level > values[i - 1]:
            a, b = values[i - 1], values[i]
            return steps[i - 1] + (level - a) / (b - a) * (steps[i] - steps[i - 1])
    return None


def rise(steps: list[float], values: list[float], lo: float, hi: float, total: float | None = None) -> dict:
    """How fast ``values`` climb from ``lo`` to ``hi``: the first time they reach ``hi`` and the last upward crossing
    of ``lo`` before it (interpolated between evaluations).

    Returns ``start`` / ``end`` steps (``None`` when never crossed), ``steps`` (their difference) and ``fraction``
    (of ``total``, default the last step). A curve that starts at or above ``lo`` has ``start`` = its first step.
    """
    if len(steps) != len(values) or not steps:
        raise DataError("rise needs equally long, non-empty steps and values")
    total = float(total if total is not None else steps[-1])
    end_i = next((i for i, v in enumerate(values) if v >= hi), None)
    out = {"start": None, "end": None, "steps": None, "fraction": None}
    if end_i is None:
        return out
    end = float(steps[0]) if end_i == 0 else _crossing(steps, values, hi, end_i)
    below = [i for i in range(end_i) if values[i] < lo]
    if not below:
        start = float(steps[0])
    else:
        start = _crossing(steps, values, lo, below[-1] + 1)
    out.update(start=start, end=end, steps=end - start, fraction=(end - start) / total if total else None)
    return out
