"""BiC's bias-correction layer (Wu et al., "Large Scale Incremental Learning", CVPR 2019, arXiv 1905.13260).

Each class's logit is mapped to ``alpha * o + beta``; the classes of one incremental step share one ``(alpha,
beta)`` pair (the official code's one ``BiasLayer`` per step), fitted by :meth:`BiasCorrection.fit_group` on a
held-out validation set with everything else frozen. Identity (1, 0) for classes never corrected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BiasCorrection(nn.Module):
    """Per-class ``alpha`` and ``beta`` (buffers, so they ride along in ``state_dict``), shared within a group."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.register_buffer("alpha", torch.ones(num_classes))
        self.register_buffer("beta", torch.zeros(num_classes))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Corrected logits ``alpha * logits + beta`` (column-wise)."""
        return logits * self.alpha + self.beta

    def fit_group(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        group: torch.Tensor,
        visible: torch.Tensor,
        steps: int = 500,
        lr: float = 0.01,
    ) -> tuple[float, float]:
        """Fit one ``(alpha, beta)`` for the classes in the bool mask ``group`` on frozen ``logits``.

        Minimises the cross-entropy over the ``visible`` classes of the corrected logits (the other
        columns keep their current correction) with full-batch Adam for ``steps`` steps from (1, 0).
        Returns the fitted pair; it is written into the group's columns.
        """
        base = self(logits.detach())[:, visible]
        raw = logits.detach()[:, visible]
        g = group[visible]
        cols = torch.nonzero(visible).flatten()
        remap = torch.full((len(visible),), -1, dtype=torch.long)
        remap[cols] = torch.arange(len(cols))
        t = remap[targets]
        ab = torch.tensor([1.0, 0.0], requires_grad=True)
        opt = torch.optim.Adam([ab], lr=lr)
        for _ in range(steps):
            out = torch.where(g, raw * ab[0] + ab[1], base)
            loss = F.cross_entropy(out, t)
            opt.zero_grad()
            loss.backward()
            opt.step()
        a, b = (float(v) for v in ab.detach())
        with torch.no_grad():
            self.alpha[group] = a
            self.beta[group] = b
        return a, b
