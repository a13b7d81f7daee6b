"""Scores over classes from several task-specific models, mixed by task weights (task inference)."""

from __future__ import annotations

import torch


def combine_task_scores(logits: torch.Tensor, class_masks: torch.Tensor, task_logq: torch.Tensor) -> torch.Tensor:
    """log sum_s q(s|x) p_s(c|x): per-task class distributions mixed by task weights.

    ``logits`` (T, n, C) are each task model's outputs, ``class_masks`` (T, C) the
    classes each task predicts, ``task_logq`` (n, T) log q(s|x). Classes no task
    predicts get ``-inf``. Used by :mod:`~lifelong.methods.dst` and
    :mod:`~lifelong.methods.hypernet` when the task id is not given at test.
    """
    logp = torch.log_softmax(logits.masked_fill(~class_masks[:, None, :], float("-inf")), dim=2)
    return torch.logsumexp(logp + task_logq.T[:, :, None], dim=0)
