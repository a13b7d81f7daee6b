"""Sparse masks: magnitude pruning and the Erdős–Rényi-kernel (ERK) layer densities.

Used by sparse-training methods (dynamic sparse training, pruning-based expansion).
"""

from __future__ import annotations

import torch


def erk_densities(shapes: list[tuple[int, int]], density: float) -> list[float]:
    """Per-layer densities of the Erdős–Rényi kernel init (Evci et al. 2020, as in DST-CL).

    Densities are ε (n_in + n_out) / (n_in n_out), with ε chosen so that the total
    number of active weights is ``density`` times the total; a layer whose density
    would exceed 1 is made dense and ε is solved again for the others.
    """
    sizes = [a * b for a, b in shapes]
    raw = [(a + b) / (a * b) for a, b in shapes]
    dense: set[int] = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        divisor = sum(raw[i] * sizes[i] for i in range(len(shapes)) if i not in dense)
        if divisor <= 0 or budget <= 0:
            return [1.0 if i in dense else 0.0 for i in range(len(shapes))]
        eps = budget / divisor
        over = [i for i in range(len(shapes)) if i not in dense and raw[i] * eps > 1]
        if not over:
            return [1.0 if i in dense else raw[i] * eps for i in range(len(shapes))]
        dense.add(max(over, key=lambda i: raw[i]))


def global_magnitude_masks(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Masks keeping the ``1 - sparsity`` largest-magnitude entries over all ``weights`` together.

    Global unstructured L1 pruning, as ``torch.nn.utils.prune.global_unstructured`` with
    ``L1Unstructured`` in TAME's official ``prune.py``.
    """
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    keep = max(1, int(round((1.0 - sparsity) * flat.numel())))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    masks, start = [], 0
    for w in weights:
        masks.append(chosen[start : start + w.numel()].view_as(w).to(w.dtype))
        start += w.numel()
    return masks
