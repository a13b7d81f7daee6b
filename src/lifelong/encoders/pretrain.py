"""Supervised pre-training of an MLP body and its linear head, frozen afterwards.

The "pre-trained model" of the small-scale adapter reproductions (CorDA, arXiv:2406.05223;
CoDyRA, arXiv:2412.01004; ALLoRA, arXiv:2410.09692; TriAdaptLoRA, arXiv:2501.08008):
an MLP trained on some classes, then frozen and adapted to others.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.encoders.mlp import MLP


def pretrain_mlp(
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    epochs: int = 10,
    hidden: Sequence[int] = (256, 256),
    lr: float = 1e-3,
    batch_size: int = 64,
) -> tuple[nn.Module, nn.Module]:
    """Train an :class:`MLP` body and a linear head on ``(x, y)`` with Adam; return both frozen, in eval mode.

    ``torch.manual_seed(seed)`` fixes the initialisation; the shuffling uses its own
    generator seeded with ``seed``. Classes are ``0..max(y)``.
    """
    hidden = tuple(hidden)
    torch.manual_seed(seed)
    body = MLP((x.shape[1],), hidden)
    head = nn.Linear(hidden[-1], int(y.max()) + 1)
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for s in range(0, len(y), batch_size):
            idx = order[s : s + batch_size]
            loss = F.cross_entropy(head(body(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    body.eval()
    for p in [*body.parameters(), *head.parameters()]:
        p.requires_grad_(False)
    return body, head


__all__ = ["pretrain_mlp"]
