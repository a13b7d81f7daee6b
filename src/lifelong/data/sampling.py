"""Mini-batch index sampling shared by the paper reproductions."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from lifelong.errors import ConfigError, DataError


def cycle_batches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Yield ``steps`` index tensors of ``batch_size`` from shuffled passes over ``range(n)`` (drop-last).

    The first permutation is drawn from ``generator`` when this function is called (not at the first
    ``next``); a new one is drawn lazily before any batch that would run past the end of the current
    one, so the last partial batch of each pass is dropped. This is exactly the hand-written loop
    ``order = randperm(n); pos = 0; per step: if pos + B > n: reshuffle; idx = order[pos:pos + B]; pos += B``
    used by the adapter reproductions (CoDyRA arXiv:2412.01004, TriAdaptLoRA arXiv:2501.08008,
    ALLoRA, CorDA), with the same ``torch.randperm`` calls in the same order.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"cycle_batches needs at least one example, got n={n!r}; pass the dataset length")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ConfigError(f"batch_size must be an int in [1, n={n}], got {batch_size!r}; lower the batch size")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be a non-negative int, got {steps!r}")
    order = torch.randperm(n, generator=generator)

    def batches(order: torch.Tensor) -> Iterator[torch.Tensor]:
        pos = 0
        for _ in range(steps):
            if pos + batch_size > n:
                order, pos = torch.randperm(n, generator=generator), 0
            yield order[pos : pos + batch_size]
            pos += batch_size

    return batches(order)
