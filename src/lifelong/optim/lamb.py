"""LAMB: layer-wise adaptive moments for large-batch training.

Large Batch Optimization for Deep Learning: Training BERT in 76 minutes (arXiv 1904.00962): Adam's update
``r`` (plus weight decay) scaled per parameter tensor by the trust ratio ``phi(||w||) / ||r||``, following
Algorithm 2 and TF-Addons' ``tfa.optimizers.LAMB`` (whose defaults it takes). Weight-decay and
layer-adaptation exclusions are parameter groups (``weight_decay``, ``adapt``), built by :func:`lamb_param_groups`.

Notes: docs/papers/lamb.md
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from lifelong.errors import ConfigError, NonFiniteLossError
from lifelong.optim.registry import register_optimizer

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

__all__ = ["Lamb", "lamb_param_groups", "NONFINITE_POLICIES"]

#: What an optimizer of this package does with a NaN/inf gradient: ``"raise"`` stops
#: with :class:`~lifelong.errors.NonFiniteLossError`; ``"skip"`` leaves parameters and
#: optimizer state untouched for that step and counts it in ``skipped_steps``.
NONFINITE_POLICIES = ("raise", "skip")

#: Default name patterns excluded from weight decay by :func:`lamb_param_groups`
#: (the BERT / TF-Addons convention: biases and LayerNorm parameters).
DEFAULT_NO_DECAY = ("bias", "LayerNorm", "layer_norm", r"(^|\.)norm")


def _check_lr(lr: float, owner: str) -> None:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(
            f"{owner}: learning rate must be a finite number > 0, got {lr!r}; pass a positive lr such as 1e-3"
        )


def _check_nonfinite_policy(policy: str, owner: str) -> None:
    if policy not in NONFINITE_POLICIES:
        raise ConfigError(
            f"{owner}: nonfinite={policy!r} is not a policy; choose one of: {', '.join(NONFINITE_POLICIES)}"
        )


def _grads_are_finite(grads: Sequence[torch.Tensor]) -> bool:
    """True when every gradient tensor is finite (one device sync in all)."""
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _nonfinite_error(owner: str) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"{owner}.step() got a NaN or infinite gradient; check the loss and inputs for NaN/inf, "
        f"lower the learning rate, or build the optimizer with nonfinite='skip' to skip such steps"
    )


class Lamb(torch.optim.Optimizer):
    """LAMB optimizer (You et al., ICLR 2020; arXiv 1904.00962).

    Adam moments with a per-tensor trust ratio ``phi(||w||) / ||r||`` that rescales
    each layer's update, so that the step of every layer is proportional to its
    weight norm. See the module docstring for the exact update.

    Args:
        params: parameters or parameter groups. A group may override ``lr``,
            ``betas``, ``eps``, ``weight_decay``, ``bias_correction``,
            ``trust_clip`` and ``adapt``.
        lr: base learning rate (> 0).
        betas: moment decay rates, each in [0, 1).
        eps: added to ``sqrt(v_hat)`` (>= 0). TF-Addons default 1e-6.
        weight_decay: decoupled L2 term ``wd * w`` added to the Adam direction
            *before* the trust ratio, as in the paper (>= 0).
        bias_correction: divide the moments by ``1 - beta^t`` (TF-Addons always
            does; the paper's v3 pseudo-code and torch-optimizer's default do not).
        trust_clip: if set, ``phi(||w||) = min(||w||, trust_clip)``; ``None`` means
            the identity (TF-Addons). torch-optimizer clips at 10.
        adapt: apply the layer-wise trust ratio (``False`` gives AdamW-style steps;
            use it per group for parameters TF-Addons excludes from layer adaptation).
        nonfinite: ``"raise"`` (default) raises :class:`NonFiniteLossError` on a NaN
            or inf gradient; ``"skip"`` skips that step entirely (no parameter or
            state change) and increments :attr:`skipped_steps`.

    Simplifications: exclusions are per parameter group instead of TF-Addons' name
    regexes (see :func:`lamb_param_groups`); sparse gradients are not supported.
    torch-optimizer's ``debias=True`` mode applies bias correction to the step size
    *outside* the trust ratio, which is a different formula from TF-Addons'; this class
    follows TF-Addons, and equals torch-optimizer exactly when bias correction is off
    and ``trust_clip`` matches its ``clamp_value``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        bias_correction: bool = True,
        trust_clip: float | None = None,
        adapt: bool = True,
        nonfinite: str = "raise",
    ):
        _check_lr(lr, "Lamb")
        _check_nonfinite_policy(nonfinite, "Lamb")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bool(bias_correction),
            trust_clip=trust_clip,
            adapt=bool(adapt),
        )
        self._validate_group(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._validate_group(group)
        self.nonfinite = nonfinite
        #: Number of steps skipped because of non-finite gradients (``nonfinite="skip"``).
        self.skipped_steps = 0

    @staticmethod
    def _validate_group(group: dict) -> None:
        _check_lr(group["lr"], "Lamb")
        betas = group["betas"]
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"Lamb: betas must be two numbers in [0, 1), got {betas!r}; use e.g. betas=(0.9, 0.999)")
        if not (math.isfinite(group["eps"]) and group["eps"] >= 0):
            raise ConfigError(f"Lamb: eps must be a finite number >= 0, got {group['eps']!r}; use e.g. 1e-6")
        if not (math.isfinite(group["weight_decay"]) and group["weight_decay"] >= 0):
            raise ConfigError(f"Lamb: weight_decay must be >= 0, got {group['weight_decay']!r}; use 0 to disable it")
        clip = group["trust_clip"]
        if clip is not None and not (math.isfinite(clip) and clip > 0):
            raise ConfigError(f"Lamb: trust_clip must be None or a number > 0, got {clip!r}; use None for no clipping")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Take one LAMB step; returns the closure's loss when a closure is given.

        Raises:
            NonFiniteLossError: a gradient holds NaN/inf and ``nonfinite="raise"``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if any(g.is_sparse for g in grads):
            raise ConfigError(
                "Lamb does not support sparse gradients; use torch.optim.SparseAdam for sparse embeddings"
            )
        if not _grads_are_finite(grads):
            if self.nonfinite == "raise":
                raise _nonfinite_error("Lamb")
            self.skipped_steps += 1
            return loss

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            clip = group["trust_clip"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                if group["bias_correction"]:
                    m_hat = m / (1.0 - beta1**t)
                    denom = (v / (1.0 - beta2**t)).sqrt_().add_(eps)
                else:
                    m_hat = m
                    denom = v.sqrt().add_(eps)
                update = m_hat.div_(denom) if m_hat is not m else m / denom
                if wd != 0:
                    update.add_(p, alpha=wd)
                if group["adapt"]:
                    w_norm = torch.linalg.vector_norm(p)
                    if clip is not None:
                        w_norm = w_norm.clamp(max=clip)
                    u_norm = torch.linalg.vector_norm(update)
                    trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    update.mul_(trust)
                p.add_(update, alpha=-lr)
        return loss


_NORM_LAYERS = tuple(
    t
    for t in (
        getattr(torch.nn, "LayerNorm", None),
        getattr(torch.nn, "GroupNorm", None),
        getattr(torch.nn, "RMSNorm", None),
        torch.nn.modules.batchnorm._BatchNorm,
        torch.nn.modules.instancenorm._InstanceNorm,
        torch.nn.LocalResponseNorm,
    )
    if t is not None
)


def lamb_param_groups(
    model: torch.nn.Module | Iterable[tuple[str, torch.nn.Parameter]],
    *,
    weight_decay: float,
    exclude_from_weight_decay: Sequence[str] | None = DEFAULT_NO_DECAY,
    exclude_from_layer_adaptation: Sequence[str] | None = None,
    exclude_norm_layers: bool = True,
) -> list[dict]:
    """Parameter groups for :class:`Lamb` with TF-Addons-style exclusions (arXiv 1904.00962).

    A parameter whose name contains a match of any regex in
    ``exclude_from_weight_decay`` gets ``weight_decay=0``; one matching
    ``exclude_from_layer_adaptation`` gets ``adapt=False``. As in TF-Addons, when
    ``exclude_from_layer_adaptation`` is ``None`` it defaults to the weight-decay list.
    With ``exclude_norm_layers`` (and a module as ``model``), the parameters of
    normalization layers (LayerNorm, BatchNorm, GroupNorm, ...) are excluded from both
    whatever their names (``nn.Sequential`` names them ``"1.weight"``) — an addition to
    TF-Addons' name matching. The defaults (biases and normalization layers) are the BERT
    convention; the paper itself does not spell out exclusions, so they are a convention,
    not a finding. Frozen parameters (``requires_grad=False``) are left out.
    """
    norm_ids: set[int] = set()
    if isinstance(model, torch.nn.Module):
        if exclude_norm_layers:
            norm_ids = {id(p) for m in model.modules() if isinstance(m, _NORM_LAYERS) for p in m.parameters()}
        named = model.named_parameters()
    else:
        named = model
    no_decay = [re.compile(p) for p in (exclude_from_weight_decay or ())]
    no_adapt_src = exclude_from_weight_decay if exclude_from_layer_adaptation is None else exclude_from_layer_adaptation
    no_adapt = [re.compile(p) for p in (no_adapt_src or ())]
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        is_norm = id(p) in norm_ids
        key = (
            not (is_norm or any(r.search(name) for r in no_decay)),
            not (is_norm or any(r.search(name) for r in no_adapt)),
        )
        groups.setdefault(key, []).append(p)
    return [
        {"params": ps, "weight_decay": weight_decay if decay else 0.0, "adapt": adapt}
        for (decay, adapt), ps in sorted(groups.items(), reverse=True)
    ]


@register_optimizer("lamb")
def lamb(params: ParamsT, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> Lamb:
    """LAMB (You et al., 2020; arXiv 1904.00962) with TF-Addons defaults; ``momentum`` is ignored."""
    return Lamb(params, lr=lr, weight_decay=weight_decay)
