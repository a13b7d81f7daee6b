"""Lottery-Ticket Sparse Fine-Tuning (LT-SFT) and composition of sparse fine-tunings.

*Composable Sparse Fine-Tuning for Cross-Lingual Transfer* (Ansell, Ponti, Korhonen, Vulić; arXiv 2110.07560),
following the official ``cambridgeltl/composable-sft`` (``src/sft/lt_sft.py``, ``trainer.py``):

1. fine-tune every trainable parameter from θ₀ for ``full_steps`` → θ₁;
2. select the ``k`` maskable entries with the largest ``|θ₁ − θ₀|`` (over all maskable tensors together);
3. reset every parameter to θ₀ and fine-tune again for ``sparse_steps``, the gradients of the maskable tensors
   multiplied by the mask (entries outside it stay at θ₀ bit for bit);
4. the result is a sparse difference φ = θ − θ₀ over the maskable tensors (a :class:`TaskVector` that is 0 outside
   the mask) plus the *non-maskable* trainable tensors stored in full (the official code's heads).

With ``n_iterations > 1`` steps 1–3 repeat, each time unfreezing ``k // n_iterations`` more entries among those not
yet selected (the last iteration takes the remainder, so exactly ``k`` are selected), each iteration starting from
the parameters at its own start. An optional L1 penalty ``l1 · Σ|θ − θ₀| / n_params`` (the official
normalisation) pulls toward θ₀ in the full (``full_l1``) and sparse (``sparse_l1``) phases.

Departures from the official code: the L1 term covers the maskable tensors only (the official
``apply_reg_to_sparse_only=True``; its default False also regularises the dense heads); the last iteration takes the
remainder of ``k`` (the official code unfreezes ``k // n_iterations`` every iteration); selection takes exactly ``k``
entries (the official ``>=`` threshold can take more on ties); no learning-rate schedule or best-checkpoint reload.

Sparse fine-tunings compose by addition: :func:`compose` returns θ₀ + Σ φ (no new parameters, same architecture).
:func:`save_sft` / :func:`load_sft` store one as safetensors (via :mod:`lifelong.merging.io`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from lifelong.errors import ConfigError
from lifelong.merging.io import load_state_dict, save_state_dict
from lifelong.merging.task_vector import TaskVector


@dataclass
class SparseFineTuning:
    """One sparse fine-tuning: ``diff`` (θ − θ₀ over the maskable tensors, 0 outside ``masks``), ``masks``
    (boolean, one per maskable tensor) and ``dense`` (non-maskable trained tensors, stored in full)."""

    diff: TaskVector
    masks: dict[str, torch.Tensor]
    dense: dict[str, torch.Tensor] = field(default_factory=dict)

    def num_selected(self) -> int:
        """Number of entries in the masks (the ``k`` of the fine-tuning)."""
        return int(sum(int(m.sum()) for m in self.masks.values()))


def num_to_tune(total: int, k: int | None = None, proportion: float | None = None) -> int:
    """``k`` itself, or ``int(proportion · total)`` (the official ``ft_params_num`` / ``ft_params_proportion``).

    Raises:
        ConfigError: neither or both given, or the count is outside ``[0, total]``.
    """
    if (k is None) == (proportion is None):
        raise ConfigError("give exactly one of k (a count) or proportion (a fraction of the maskable entries)")
    n = int(k) if k is not None else int(float(proportion) * total)
    if not 0 <= n <= total:
        raise ConfigError(f"cannot select {n} entries out of {total} maskable ones; lower k or proportion")
    return n


def select_top_k(
    base: Mapping[str, torch.Tensor],
    tuned: Mapping[str, torch.Tensor],
    k: int,
    keys: Collection[str] | None = None,
    already: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Boolean masks selecting exactly ``k`` entries of ``keys`` (default: every key of ``base``) with the largest
    ``|tuned − base|`` over all those tensors together; entries already in ``already`` are not chosen again and
    stay selected (the returned masks are ``already`` plus the ``k`` new entries).

    Ties are broken by :func:`torch.topk`, so exactly ``k`` new entries are taken (the official code's
    ``>=`` threshold can take more on ties).
    """
    keys = list(base) if keys is None else [k_ for k_ in base if k_ in set(keys)]
    with torch.no_grad():
        flats, sizes = [], []
        for key in keys:
            delta = (tuned[key].detach().double() - base[key].detach().double()).abs().reshape(-1)
            if already is not None and key in already:
                delta = delta.masked_fill(already[key].reshape(-1), -1.0)  # never re-selected
            flats.append(delta)
            sizes.append(delta.numel())
        free = sum(sizes) - sum(int(already[key].sum()) for key in keys if already is not None and key in already)
        if not 0 <= k <= free:
            raise ConfigError(f"cannot select {k} entries: only {free} maskable entries are not selected yet")
        chosen = torch.zeros(sum(sizes), dtype=torch.bool)
        if k > 0:
            chosen[torch.topk(torch.cat(flats), k).indices] = True
        out, start = {}, 0
        for key, size in zip(keys, sizes):
            mask = chosen[start : start + size].reshape(base[key].shape)
            if already is not None and key in already:
                mask = mask | already[key].bool()
            out[key] = mask
            start += size
    return out


def _l1(model: nn.Module, origin: Mapping[str, torch.Tensor], names: Collection[str], n_params: int) -> torch.Tensor:
    terms = [(p - origin[n]).abs().sum() for n, p in model.named_parameters() if n in names]
    return torch.stack(terms).sum() / n_params


def _optimizer(params: list[torch.Tensor], name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def _train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, int], torch.Tensor],
    steps: int,
    lr: float,
    optimizer: str,
    l1: float,
    origin: Mapping[str, torch.Tensor],
    maskable: Collection[str],
    n_params: int,
    masks: Mapping[str, torch.Tensor] | None,
    start: Mapping[str, torch.Tensor] | None,
    step0: int,
) -> None:
    """``steps`` optimiser steps; with ``masks``, maskable gradients are masked and the entries outside the mask
    are put back to ``start`` after every step (bit-exact even with momentum or weight decay)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params or steps <= 0:
        return
    opt = _optimizer(params, optimizer, lr)
    named = dict(model.named_parameters())
    for step in range(steps):
        loss = loss_fn(model, step0 + step)
        if l1:
            loss = loss + l1 * _l1(model, origin, maskable, n_params)
        opt.zero_grad()
        loss.backward()
        if masks is not None:
            for n, m in masks.items():
                if named[n].grad is not None:
                    named[n].grad.mul_(m)
        opt.step()
        if masks is not None:
            with torch.no_grad():
                for n, m in masks.items():
                    named[n].copy_(torch.where(m, named[n], start[n]))


def lottery_ticket_sft(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, int], torch.Tensor],
    *,
    k: int | None = None,
    proportion: float | None = None,
    full_steps: int,
    sparse_steps: int,
    lr: float,
    n_iterations: int = 1,
    maskable: Collection[str] | None = None,
    frozen: Collection[str] = (),
    full_l1: float = 0.0,
    sparse_l1: float = 0.0,
    optimizer: str = "adam",
    masks: Mapping[str, torch.Tensor] | None = None,
) -> SparseFineTuning:
    """Learn a sparse fine-tuning of ``model`` by LT-SFT (module docstring); returns a :class:`SparseFineTuning`.

    Args:
        model: trained in place; on return it holds θ₀ + φ (its starting values are θ₀).
        loss_fn: ``loss_fn(model, step)`` draws a batch for global step ``step`` and returns the loss.
        k / proportion: how many maskable entries to tune (exactly one of them).
        full_steps / sparse_steps: optimiser steps of the full and the sparse phase of each iteration.
        lr: learning rate of both phases.
        n_iterations: LT-SFT iterations (the official ``n_ft_iterations``).
        maskable: names of the parameters that are sparsely tuned (default: every trainable one); other trainable
            parameters are tuned in full in both phases and returned in ``dense``.
        frozen: names of parameters kept fixed throughout (the official freezing of embeddings, LayerNorm, ...).
        full_l1 / sparse_l1: L1 coefficients toward θ₀ in each phase (official normalisation by parameter count).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9); a fresh one per phase, as the official trainer.
        masks: fixed masks to use instead of learning them (no full phase; e.g. a random-mask control).

    Raises:
        ConfigError: unknown parameter names, a bad ``k`` / ``proportion`` or ``n_iterations < 1``.
    """
    named = dict(model.named_parameters())
    unknown = [n for n in list(maskable or []) + list(frozen) if n not in named]
    if unknown:
        raise ConfigError(f"no parameters named {', '.join(sorted(unknown))} in the model; names: {', '.join(named)}")
    if n_iterations < 1:
        raise ConfigError(f"n_iterations must be >= 1, got {n_iterations}")
    was = {n: p.requires_grad for n, p in named.items()}
    try:
        for n in frozen:
            named[n].requires_grad_(False)
        trainable = [n for n, p in named.items() if p.requires_grad]
        maskable = [n for n in trainable if maskable is None or n in set(maskable)]
        dense_names = [n for n in trainable if n not in set(maskable)]
        n_maskable = sum(named[n].numel() for n in maskable)
        n_params = sum(p.numel() for p in named.values())
        with torch.no_grad():
            origin = {n: named[n].detach().clone() for n in trainable}
        run = dict(loss_fn=loss_fn, lr=lr, optimizer=optimizer, origin=origin, maskable=maskable, n_params=n_params)
        step = 0
        if masks is not None:
            bad = [n for n in masks if n not in maskable or masks[n].shape != named[n].shape]
            if bad:
                raise ConfigError(f"masks for {', '.join(bad)} do not match the maskable parameters' names or shapes")
            current = {
                n: masks[n].bool() if n in masks else torch.zeros_like(named[n], dtype=torch.bool) for n in maskable
            }
            _train(model, steps=sparse_steps, l1=sparse_l1, masks=current, start=origin, step0=0, **run)
        else:
            total = num_to_tune(n_maskable, k, proportion)
            current = {n: torch.zeros_like(named[n], dtype=torch.bool) for n in maskable}
            for it in range(n_iterations):
                with torch.no_grad():
                    start = {n: named[n].detach().clone() for n in trainable}
                _train(model, steps=full_steps, l1=full_l1, masks=None, start=None, step0=step, **run)
                step += full_steps
                share = total // n_iterations if it < n_iterations - 1 else total - (total // n_iterations) * it
                tuned = {n: named[n].detach() for n in maskable}
                current = select_top_k(start, tuned, share, maskable, already=current)
                with torch.no_grad():
                    for n in trainable:
                        named[n].copy_(start[n])
                _train(model, steps=sparse_steps, l1=sparse_l1, masks=current, start=start, step0=step, **run)
                step += sparse_steps
        with torch.no_grad():
            diff = TaskVector({n: (named[n].detach() - origin[n]) * current[n] for n in maskable})
            dense = {n: named[n].detach().clone() for n in dense_names}
        return SparseFineTuning(diff=diff, masks={n: m.clone() for n, m in current.items()}, dense=dense)
    finally:
        for n, p in named.items():
            p.requires_grad_(was[n])


def compose(base: Mapping[str, torch.Tensor], *sfts: SparseFineTuning) -> dict[str, torch.Tensor]:
    """θ₀ + Σ φ: a new state dict with every fine-tuning's ``diff`` added to ``base``; a ``dense`` tensor replaces
    the base's value (later fine-tunings win when several store the same tensor in full).

    Raises:
        ConfigError: a key of a fine-tuning is not in ``base`` or has another shape there.
    """
    out = {k: v.detach().clone() for k, v in base.items()}
    for sft in sfts:
        out = sft.diff.apply_to(out)
        for key, value in sft.dense.items():
            if key not in out or out[key].shape != value.shape:
                raise ConfigError(f"dense tensor {key!r} does not fit the base state dict; compose with its base")
            out[key] = value.detach().clone().to(out[key].dtype)
    return out


def save_sft(
    sft: SparseFineTuning, path: str | os.PathLike, metadata: Mapping[str, object] | None = None
) -> os.PathLike:
    """Write ``sft`` to the safetensors file ``path`` (keys ``diff.*``, ``mask.*``, ``dense.*``); returns the path."""
    tensors = {f"diff.{k}": v for k, v in sft.diff.items()}
    tensors |= {f"mask.{k}": v.bool() for k, v in sft.masks.items()}
    tensors |= {f"dense.{k}": v for k, v in sft.dense.items()}
    return save_state_dict(tensors, path, {"format": "lifelong-sft", **(metadata or {})})


def load_sft(path: str | os.PathLike) -> SparseFineTuning:
    """Read a :class:`SparseFineTuning` written by :func:`save_sft`.

    Raises:
        ConfigError / DataError: as :func:`lifelong.merging.io.load_state_dict`; ConfigError for a file whose keys
            are not ``diff.*`` / ``mask.*`` / ``dense.*``.
    """
    tensors = load_state_dict(path)
    parts: dict[str, dict] = {"diff": {}, "mask": {}, "dense": {}}
    for key, value in tensors.items():
        kind, _, name = key.partition(".")
        if kind not in parts or not name:
            raise ConfigError(f"{path} holds {key!r}, not a sparse fine-tuning key (diff.*, mask.*, dense.*)")
        parts[kind][name] = value
    return SparseFineTuning(diff=TaskVector(parts["diff"]), masks=parts["mask"], dense=parts["dense"])


__all__ = [
    "SparseFineTuning",
    "num_to_tune",
    "select_top_k",
    "lottery_ticket_sft",
    "compose",
    "save_sft",
    "load_sft",
]
