"""Merging whole models: a registered merge method applied key by key to task vectors or state dicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lifelong.errors import ConfigError
from lifelong.merging.methods import MergeConfig, get_merge_method, merge_config
from lifelong.merging.task_vector import TaskVector, check_compatible


def _resolve(method: str, config: MergeConfig | None, overrides: Mapping[str, Any]) -> tuple[Any, MergeConfig]:
    entry = get_merge_method(method)
    if config is None:
        config = merge_config(entry.name, overrides)
    else:
        if overrides:
            raise ConfigError("pass either a config or keyword settings, not both; e.g. merge(..., density=0.1)")
        if not isinstance(config, entry.config_class):
            raise ConfigError(
                f"merge method {entry.name} takes a {entry.config_class.__name__}, got {type(config).__name__}; "
                f"build it with lifelong.merging.merge_config({entry.name!r}, ...)"
            )
        config.validate()
    return entry, config


def _weights(weights: Sequence[float] | None, n: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(n, dtype=torch.float64)
    w = torch.as_tensor(list(weights), dtype=torch.float64)
    if w.numel() != n or not torch.isfinite(w).all():
        raise ConfigError(f"weights must be {n} finite numbers, one per expert; got {list(weights)}")
    return w


def merge_task_vectors(
    vectors: Sequence[TaskVector],
    method: str = "task-arithmetic",
    config: MergeConfig | None = None,
    *,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    **overrides: Any,
) -> TaskVector:
    """The merged task vector ``alpha · method(τ_1, ..., τ_n)`` (one call of the method per key).

    ``config`` or keyword ``overrides`` (e.g. ``density=0.1``) set the method's settings;
    ``weights`` (default all 1) weight the experts; ``seed`` seeds the random masks (DARE), drawn
    key by key in the vectors' key order. Computation runs in float32 (float64 kept), results are
    returned in the vectors' dtypes.

    Raises:
        ConfigError: no vectors, differing keys or shapes, a bad setting or weight.
    """
    vectors = list(vectors)
    if not vectors:
        raise ConfigError("merge needs at least one task vector (or expert model)")
    entry, config = _resolve(method, config, overrides)
    first = vectors[0]
    check_compatible(first, vectors[1:], [f"task vector {i}" for i in range(1, len(vectors))])
    w = _weights(weights, len(vectors))
    generator = torch.Generator().manual_seed(int(seed))
    out = {}
    with torch.no_grad():
        for key, ref in first.items():
            work = torch.float64 if ref.dtype == torch.float64 else torch.float32
            deltas = torch.stack([v[key].to(work) for v in vectors])
            mixed = entry.fn(deltas, w.to(work), config, generator)
            out[key] = (config.alpha * mixed).to(ref.dtype)
    return TaskVector(out)


def merge(
    base: Mapping[str, torch.Tensor],
    experts: Sequence[Mapping[str, torch.Tensor]],
    method: str = "task-arithmetic",
    config: MergeConfig | None = None,
    *,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    names: Sequence[str] = (),
    **overrides: Any,
) -> dict[str, torch.Tensor]:
    """Merge fine-tuned ``experts`` of ``base`` into one state dict with ``method`` (see :func:`merge_task_vectors`).

    Floating-point tensors are merged; other tensors (integer buffers) are copied from ``base``.
    ``names`` label the experts in error messages (e.g. their file names).

    Raises:
        ConfigError: no experts, keys or shapes that differ from ``base`` (the message names the expert).
    """
    experts = list(experts)
    if not experts:
        raise ConfigError("merge needs at least one expert model; pass the fine-tuned state dicts")
    check_compatible(base, experts, names)
    vectors = [TaskVector.between(base, e) for e in experts]
    merged = merge_task_vectors(vectors, method, config, weights=weights, seed=seed, **overrides)
    return merged.apply_to(base)


__all__ = ["merge", "merge_task_vectors"]
