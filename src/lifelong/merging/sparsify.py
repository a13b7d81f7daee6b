"""Sparse masks of one task-vector tensor, each a boolean tensor of the input's shape (vectorised, no element loops).

- :func:`magnitude_mask`: keep the ``density`` fraction of largest magnitudes (TIES' trim step,
  *TIES-Merging: Resolving Interference When Merging Models*, arXiv 2306.01708).
- :func:`random_mask`: keep each entry with probability ``density`` (DARE's drop step, *Language Models
  are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch*, arXiv 2311.03099).
- :func:`breadcrumbs_mask`: drop the ``gamma`` fraction of largest magnitudes (outliers), then keep the
  next ``density`` fraction, dropping the small rest (*Model Breadcrumbs: Scaling Multi-Task Model
  Merging with Sparse Masks*, arXiv 2312.06795). ``per_row=True`` ranks within each row of the last
  dimension, as the official code; ``per_row=False`` ranks the flattened tensor, as mergekit.
- :func:`rescale`: DARE's ``1/density`` rescaling, or mergekit's L1-norm matching.
"""

from __future__ import annotations

import torch

RESCALES: tuple[str, ...] = ("inverse", "l1", "none")


def _band(magnitude: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """True where an entry's descending rank along the last dim lies in ``[lo, hi)``."""
    order = magnitude.argsort(dim=-1, descending=True)
    position = torch.arange(magnitude.shape[-1], device=magnitude.device)
    keep = ((position >= lo) & (position < hi)).expand_as(order)
    return torch.zeros_like(magnitude, dtype=torch.bool).scatter_(-1, order, keep)


def _magnitude(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().abs().float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.detach().abs()


def magnitude_mask(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``max(1, int(density · numel))`` largest magnitudes of the flattened tensor (all at density 1)."""
    if density >= 1:
        return torch.ones_like(tensor, dtype=torch.bool)
    if density <= 0 or tensor.numel() == 0:
        return torch.zeros_like(tensor, dtype=torch.bool)
    k = max(1, int(density * tensor.numel()))
    return _band(_magnitude(tensor).reshape(-1), 0, k).reshape(tensor.shape)


def random_mask(tensor: torch.Tensor, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep each entry independently with probability ``density`` (one ``torch.bernoulli`` draw in float32)."""
    if density >= 1:
        return torch.ones_like(tensor, dtype=torch.bool)
    p = torch.full(tensor.shape, float(density), dtype=torch.float32, device=tensor.device)
    return torch.bernoulli(p, generator=generator).bool()


def breadcrumbs_mask(tensor: torch.Tensor, density: float, gamma: float, per_row: bool = True) -> torch.Tensor:
    """Drop the top ``gamma`` fraction by magnitude, keep the next ``density`` fraction, drop the rest.

    Counts are ``int(gamma · n)`` and ``int(density · n)`` with ``n`` the row length (``per_row``, rows
    along the last dimension; a 1-D tensor is one row, a scalar is kept) or the number of entries
    (flattened). When ``density + gamma`` exceeds 1 fewer outliers are dropped, so ``density`` is kept
    (mergekit's rule). ``density >= 1`` keeps everything.
    """
    if density >= 1:
        return torch.ones_like(tensor, dtype=torch.bool)
    if per_row:
        if tensor.dim() == 0:  # the official code leaves scalars alone
            return torch.ones_like(tensor, dtype=torch.bool)
        rows = _magnitude(tensor).reshape(-1, tensor.shape[-1])
    else:
        rows = _magnitude(tensor).reshape(1, -1)
    n = rows.shape[-1]
    keep = int(density * n)
    drop_top = min(int(gamma * n), n - keep)
    return _band(rows, drop_top, drop_top + keep).reshape(tensor.shape)


def rescale(tensor: torch.Tensor, mask: torch.Tensor, how: str, density: float, eps: float = 1e-7) -> torch.Tensor:
    """``tensor · mask`` rescaled: ``inverse`` divides by ``density`` (DARE, PEFT), ``l1`` matches the L1 norm of
    ``tensor`` (mergekit; left unscaled when either norm is below ``eps``), ``none`` leaves it."""
    masked = tensor * mask
    if how == "none" or density >= 1:
        return masked
    if how == "inverse":
        return masked / density
    if how == "l1":
        before, after = tensor.abs().sum(), masked.abs().sum()
        if before < eps or after < eps:
            return masked
        return masked * (before / after)
    raise ValueError(f"rescale must be one of {', '.join(RESCALES)}, got {how!r}")


__all__ = ["RESCALES", "magnitude_mask", "random_mask", "breadcrumbs_mask", "rescale"]
