"""Losses over embeddings and prototypes shared by prototype-based continual methods.

:func:`supcon_loss` (supervised contrast, Khosla et al. 2020; PRD, OnPro), :func:`prototype_contrast_loss`
(OnPro's online prototype equilibrium), :func:`class_means` (per-class batch means), :func:`soft_cross_entropy`
(distillation from a teacher's softened distribution, PRD), :func:`mixup_cross_entropy` (mixup against two
labels, OnPro's feedback); the views they compare come from :func:`lifelong.data.augment.augment`. All are
batched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.errors import DataError


def supcon_loss(
    z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1, base_temperature: float | None = None
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "all" contrast mode).

    Args:
        z: ``(n, d)`` L2-normalised embeddings; views of one example are separate rows
            that share a label (concatenate the views and repeat the labels).
        labels: ``(n,)`` integer labels.
        temperature: softmax temperature tau.
        base_temperature: the loss is scaled by ``temperature / base_temperature``
            (0.07 in the reference implementation); ``None`` means no scaling.

    Every row is an anchor; its positives are the other rows with its label, the
    denominator runs over all other rows. Anchors without a positive are skipped;
    returns 0 when no anchor has one.
    """
    if z.ndim != 2 or labels.shape != (z.shape[0],):
        raise DataError(
            f"supcon_loss needs z of shape (n, d) and labels of shape (n,), "
            f"got {tuple(z.shape)} and {tuple(labels.shape)}"
        )
    n = z.shape[0]
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return z.sum() * 0.0
    mean_log_prob = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    scale = 1.0 if base_temperature is None else temperature / base_temperature
    return -scale * mean_log_prob.mean()


def class_means(z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class means of ``z`` (rows of absent classes are 0) and a mask of present classes."""
    counts = torch.zeros(num_classes, dtype=z.dtype, device=z.device).index_add_(
        0, labels, torch.ones_like(labels, dtype=z.dtype)
    )
    sums = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device).index_add(0, labels, z)
    present = counts > 0
    return sums / counts.clamp(min=1).unsqueeze(1), present


def prototype_contrast_loss(p1: torch.Tensor, p2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """OnPro's online prototype equilibrium (OPE) loss on prototypes of two views.

    ``p1`` and ``p2`` are ``(k, d)`` prototypes (per-class mean embeddings) of the same
    ``k`` classes under two augmentations. After L2 normalisation, each of the ``2k``
    prototypes is an anchor whose positive is its class's prototype in the other view
    and whose negatives are all other prototypes (both views), as in a SimCLR loss over
    prototypes (Wei et al. 2023, Eq. 3-5). With one class the loss is 0.
    """
    if p1.shape != p2.shape or p1.ndim != 2:
        raise DataError(
            f"prototype_contrast_loss needs two (k, d) tensors of equal shape, "
            f"got {tuple(p1.shape)} and {tuple(p2.shape)}"
        )
    k = p1.shape[0]
    if k < 2:
        return p1.sum() * 0.0
    p = F.normalize(torch.cat([p1, p2]), dim=1)
    logits = p @ p.T / temperature
    logits = logits.masked_fill(torch.eye(2 * k, dtype=torch.bool, device=p.device), float("-inf"))
    target = torch.cat([torch.arange(k, 2 * k), torch.arange(0, k)]).to(p.device)
    return F.cross_entropy(logits, target)


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``mean_i sum_c -softmax(t_i / T)_c * log_softmax(s_i / T)_c`` (teacher targets are detached)."""
    q = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return -(q * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()


def mixup_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``mean((1 - lam) * CE(logits, y_a) + lam * CE(logits, y_b))`` for inputs mixed as ``(1-lam) x_a + lam x_b``."""
    ce_a = F.cross_entropy(logits, y_a, reduction="none")
    ce_b = F.cross_entropy(logits, y_b, reduction="none")
    return ((1 - lam) * ce_a + lam * ce_b).mean()


def ocm_similarity(projections: torch.Tensor, features: torch.Tensor, offset: int, scale: float = 1.0) -> torch.Tensor:
    """OCM's similarity matrix ``scale * (P F_s^T + P P^T)`` for its instance-wise contrastive loss.

    ``P`` are the L2-normalised projections ``(n, d)``; ``F_s`` the L2-normalised backbone
    features' ``d`` columns from ``offset`` (OCM draws the offset at random each step). Raises
    :class:`DataError` when the features have fewer than ``offset + d`` columns.
    """
    d = projections.shape[1]
    if offset < 0 or features.shape[1] < offset + d:
        raise DataError(
            f"ocm_similarity needs features with at least offset + {d} = {offset + d} columns, got {features.shape[1]}"
        )
    p = F.normalize(projections, dim=1)
    f = F.normalize(features, dim=1)[:, offset : offset + d]
    return scale * (p @ f.T + p @ p.T)


def supervised_nt_xent(
    sim: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.5,
    *,
    exclude_self: bool = True,
    instance_term: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """OCM's supervised NT-Xent over a similarity matrix of two stacked views (rows ``0..B-1`` and ``B..2B-1``).

    ``labels`` has ``B`` entries (those of the first view; the second repeats them). With
    ``row = softmax(sim / temperature)`` per row (the diagonal left out when ``exclude_self``),
    the loss is ``-sum_j w_ij log(row_ij + eps)`` averaged over rows, ``w_ij`` spreading weight 1
    over the row's same-label entries (itself included); with ``exclude_self`` that term counts
    twice and ``instance_term`` adds the cross-view pair of each example (OCM's loss for the
    incoming batch; ``exclude_self=False, instance_term=False`` is its loss for the replay batch).
    """
    n = sim.shape[0]
    if sim.shape != (n, n) or n % 2 or len(labels) * 2 != n:
        raise DataError(
            f"supervised_nt_xent needs a (2B, 2B) matrix and B labels, got {tuple(sim.shape)}, {len(labels)}"
        )
    b = n // 2
    logits = (sim - sim.max(1, keepdim=True).values.detach()) / temperature
    e = logits.exp()
    if exclude_self:
        e = e * (1 - torch.eye(n, dtype=e.dtype))
    nll = -torch.log(e / (e.sum(1, keepdim=True) + eps) + eps)
    lab = labels.repeat(2)
    same = (lab[:, None] == lab[None, :]).to(nll.dtype)
    w = same / (same.sum(1, keepdim=True) + eps)
    sup = (w * nll).sum() / n
    if not exclude_self:
        return sup
    loss = 2 * sup
    if instance_term:
        idx = torch.arange(b)
        loss = loss + (nll[idx, idx + b].sum() + nll[idx + b, idx].sum()) / n
    return loss
