"""Data augmentation: random views of a batch for contrastive losses (shifts for images, scaled noise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.errors import DataError


def augment(x: torch.Tensor, generator: torch.Generator, *, noise: float = 0.0, shift: int = 0) -> torch.Tensor:
    """A random view of ``x`` for contrastive losses.

    Images (``x`` of shape ``(n, C, H, W)``) are translated by independent integer
    offsets in ``[-shift, shift]`` per axis (zero padding); every input then gets
    Gaussian noise with standard deviation ``noise`` times the example's RMS value,
    so the same setting suits pixels and unit-norm sentence embeddings alike.
    """
    if shift < 0 or noise < 0:
        raise DataError(f"augment needs shift >= 0 and noise >= 0, got shift={shift}, noise={noise}")
    out = x
    if shift > 0 and x.ndim == 4:
        n, c, h, w = x.shape
        padded = F.pad(x, (shift, shift, shift, shift))
        dy = torch.randint(-shift, shift + 1, (n,), generator=generator)
        dx = torch.randint(-shift, shift + 1, (n,), generator=generator)
        rows = torch.arange(h)[None, :] + shift + dy[:, None]
        cols = torch.arange(w)[None, :] + shift + dx[:, None]
        out = padded[
            torch.arange(n)[:, None, None, None],
            torch.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    if noise > 0:
        flat = out.reshape(len(out), -1)
        rms = flat.pow(2).mean(1).sqrt().reshape(-1, *([1] * (out.ndim - 1)))
        out = out + noise * rms * torch.randn(out.shape, generator=generator, dtype=out.dtype)
    return out


OCM_ROTATIONS = 16  # views of OCM's rotation expansion: 4 half-image flips x 4 global rotations


def ocm_rotations(x: torch.Tensor, count: int = OCM_ROTATIONS) -> torch.Tensor:
    """OCM's rotation expansion of square images: ``count`` transformed copies of the batch, stacked.

    Copy ``i`` (rows ``i * n .. (i + 1) * n``) is one of 4 "inner" variants (the original, the left
    half rotated by 180 degrees, both halves rotated, the right half rotated) under one of 4 global
    rotations (0, 180, 90, 270 degrees), in that order; ``count`` 4 keeps the global rotations
    of the original only, 1 the batch itself. Used with labels ``y + num_classes * i`` (Online
    Continual Learning through Mutual Information Maximization, OCM; Online Prototype Learning for
    Online Continual Learning, arXiv 2308.00301).
    """
    if count not in (1, 4, OCM_ROTATIONS):
        raise DataError(f"ocm_rotations supports 1, 4 or {OCM_ROTATIONS} copies, got {count}")
    if count == 1:
        return x
    if x.ndim != 4 or x.shape[2] != x.shape[3] or x.shape[3] % 2:
        raise DataError(f"ocm_rotations needs square images of even size (n, C, H, H), got {tuple(x.shape)}")
    if count == 4:
        inner = [x]
    else:
        half = x.shape[3] // 2
        left, right = x[..., :half], x[..., half:]
        left_r, right_r = left.flip(2, 3), right.flip(2, 3)
        inner = [x, torch.cat([left_r, right], 3), torch.cat([left_r, right_r], 3), torch.cat([left, right_r], 3)]
    stacked = torch.cat(inner)
    return torch.cat([torch.rot90(stacked, k, (2, 3)) for k in (0, 2, 1, 3)])
