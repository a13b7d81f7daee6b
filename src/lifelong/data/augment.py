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
