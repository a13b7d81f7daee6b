"""AdAdaGrad / AdAdaGradNorm: adaptive gradient methods with adaptively growing batches.

AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient Methods (arXiv 2402.11215). A training loop
combines an optimizer (:class:`AdaGradNorm`, registered ``"adagradnorm"``, or ``torch.optim.Adagrad``) with a
batch-size controller (:class:`NormTestBatchController`, :class:`InnerProductTestBatchController`) that runs
the adaptive-sampling test on per-sample gradients (``torch.func``) between steps; the batch never shrinks.
:func:`adadagradnorm` and :func:`adadagrad` build both.

Notes: docs/papers/adadagrad.md
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch

from lifelong.errors import ConfigError
from lifelong.optim.batch_size import (
    BatchSizeController,
    InnerProductTestBatchController,
    NormTestBatchController,
    per_sample_gradients,
)
from lifelong.optim.lamb import _check_lr, _check_nonfinite_policy, _grads_are_finite, _nonfinite_error
from lifelong.optim.registry import register_optimizer

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

__all__ = [
    "AdaGradNorm",
    "BatchSizeController",
    "NormTestBatchController",
    "InnerProductTestBatchController",
    "per_sample_gradients",
    "adadagrad",
    "adadagradnorm",
]


#: Accumulator layouts of :class:`AdaGradNorm`.
GRANULARITIES: tuple[str, ...] = ("row", "global")


class AdaGradNorm(torch.optim.Optimizer):
    """AdaGrad-Norm (Ward, Wu & Bottou 2019), the optimizer of AdAdaGradNorm (arXiv 2402.11215).

    ``granularity="row"`` (the default) follows the official ``adagradnorm.py`` of
    ``timlautk/AdAdaGrad``: every output row of a weight (the first dimension of a tensor with
    two or more dimensions: a neuron of a linear layer, a filter of a convolution) has its own
    accumulator, fed with that row's squared gradient norm::

        b_r^2 <- b_r^2 + ||g_r||^2        w_r <- w_r - lr * g_r / (b_r + eps)

    A one-dimensional parameter (a bias) that comes right after a weight with as many rows
    accumulates, per entry ``j``, the squared norm of the weight's row ``j`` plus ``g_j^2`` (the
    official code's way to give a bias its row's step size); any other one-dimensional or
    scalar parameter is accumulated coordinate-wise (plain AdaGrad). "Right after" means the
    next parameter in the optimizer's order, across groups, as in the official loop.

    ``granularity="global"`` is the paper's scalar version: one accumulator for *all*
    parameters of the optimizer together, ``b^2 <- b^2 + ||g||^2`` with ``||g||`` the global
    L2 norm of the step's gradient (:attr:`accumulator`).

    Accumulators start at ``initial_accumulator_value`` (``b_0^2``; 1e-2 as in the official
    code). Groups may have different ``lr`` and ``weight_decay`` (L2 added to the gradient
    before accumulation, as ``torch.optim.Adagrad``; the official code adds ``lr * wd * g``
    instead, which is not an L2 penalty, and defaults to no weight decay).

    Args:
        params: parameters or parameter groups.
        lr: step size ``eta`` (> 0).
        initial_accumulator_value: ``b_0^2`` (> 0).
        weight_decay: L2 penalty (>= 0).
        eps: added to ``b`` (>= 0).
        nonfinite: ``"raise"`` or ``"skip"`` on NaN/inf gradients (see
            :data:`lifelong.optim.lamb.NONFINITE_POLICIES`).
        granularity: ``"row"`` (official code, default) or ``"global"`` (one scalar).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        *,
        initial_accumulator_value: float = 1e-2,
        weight_decay: float = 0.0,
        eps: float = 1e-10,
        nonfinite: str = "raise",
        granularity: str = "row",
    ):
        _check_lr(lr, "AdaGradNorm")
        if granularity not in GRANULARITIES:
            raise ConfigError(
                f"AdaGradNorm: granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}; "
                "'row' is the official code's per-row accumulator, 'global' the paper's scalar one"
            )
        _check_nonfinite_policy(nonfinite, "AdaGradNorm")
        if not (math.isfinite(initial_accumulator_value) and initial_accumulator_value > 0):
            raise ConfigError(
                f"AdaGradNorm: initial_accumulator_value (b0^2) must be > 0, got "
                f"{initial_accumulator_value!r}; use e.g. 1e-2"
            )
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ConfigError(f"AdaGradNorm: weight_decay must be >= 0, got {weight_decay!r}; use 0 to disable it")
        if not (math.isfinite(eps) and eps >= 0):
            raise ConfigError(f"AdaGradNorm: eps must be >= 0, got {eps!r}; use e.g. 1e-10")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        for group in self.param_groups:
            _check_lr(group["lr"], "AdaGradNorm")
        self.nonfinite = nonfinite
        self.eps = eps
        #: ``"row"`` (one accumulator per output row, the official code) or ``"global"`` (one scalar).
        self.granularity = granularity
        self._b0_sq = float(initial_accumulator_value)
        first = next(p for g in self.param_groups for p in g["params"])
        #: The scalar accumulator ``b^2`` of ``granularity="global"`` (a 0-d tensor on the parameters'
        #: device); with ``"row"`` the per-row accumulators are in ``state[p]["sum"]`` and this stays at ``b_0^2``.
        self.accumulator = torch.full((), float(initial_accumulator_value), dtype=torch.float32, device=first.device)
        #: Number of steps skipped because of non-finite gradients.
        self.skipped_steps = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One AdaGrad-Norm step; returns the closure's loss when given.

        Raises:
            NonFiniteLossError: a gradient holds NaN/inf and ``nonfinite="raise"``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pairs = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                pairs.append((group, p, g))
        if not pairs:
            return loss
        grads = [g for _, _, g in pairs]
        if not _grads_are_finite(grads):
            if self.nonfinite == "raise":
                raise _nonfinite_error("AdaGradNorm")
            self.skipped_steps += 1
            return loss
        if self.granularity == "global":
            sq = torch.stack([g.float().pow(2).sum() for g in grads]).sum()
            self.accumulator.add_(sq.to(self.accumulator.device))
            denom = self.accumulator.sqrt().add_(self.eps)
            for group, p, g in pairs:
                p.add_(g / denom.to(p.device, p.dtype), alpha=-group["lr"])
            return loss
        prev_rows = None  # squared row norms of the previous weight (official: the bias's own layer)
        for group, p, g in pairs:
            state = self.state[p]
            gf = g.float()
            if g.dim() >= 2:
                rows = gf.reshape(g.shape[0], -1).pow(2).sum(1)
                if "sum" not in state:
                    state["sum"] = torch.full((g.shape[0],), self._b0_sq, dtype=torch.float32, device=p.device)
                state["sum"].add_(rows)
                denom = state["sum"].sqrt().add_(self.eps).view(-1, *([1] * (g.dim() - 1)))
                prev_rows = rows
            else:
                if "sum" not in state:
                    state["sum"] = torch.full(g.shape, self._b0_sq, dtype=torch.float32, device=p.device)
                if g.dim() == 1 and prev_rows is not None and prev_rows.shape[0] == g.shape[0]:
                    state["sum"].add_(prev_rows)
                state["sum"].add_(gf.pow(2))
                denom = state["sum"].sqrt().add_(self.eps)
            p.add_(g / denom.to(p.dtype), alpha=-group["lr"])
        return loss

    def state_dict(self) -> dict:
        """Standard optimizer state plus the scalar accumulator ``b^2``."""
        sd = super().state_dict()
        sd["accumulator"] = self.accumulator.clone()
        return sd

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Load a :meth:`state_dict`; raises ConfigError if the accumulator is missing."""
        state_dict = dict(state_dict)
        if "accumulator" not in state_dict:
            raise ConfigError(
                "AdaGradNorm.load_state_dict: the state has no 'accumulator'; "
                "it was not saved by AdaGradNorm.state_dict()"
            )
        acc = state_dict.pop("accumulator")
        super().load_state_dict(state_dict)
        self.accumulator = torch.as_tensor(acc, dtype=torch.float32).to(self.accumulator.device).clone()


@register_optimizer("adagradnorm")
def _adagradnorm_factory(
    params: ParamsT, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> AdaGradNorm:
    """AdaGrad-Norm with per-row accumulators as in the official AdAdaGrad code (arXiv 2402.11215);
    ``momentum`` is ignored."""
    return AdaGradNorm(params, lr=lr, weight_decay=weight_decay)


_TESTS = {"norm": NormTestBatchController, "inner_product": InnerProductTestBatchController}


def _controller(test: str, initial_batch_size: int, max_batch_size: int, test_kwargs: dict):
    if test not in _TESTS:
        raise ConfigError(f"unknown batch-size test {test!r}; choose one of: {', '.join(sorted(_TESTS))}")
    return _TESTS[test](initial_batch_size, max_batch_size, **test_kwargs)


def adadagradnorm(
    params: torch.nn.Module | ParamsT,
    *,
    lr: float,
    test: str = "norm",
    initial_batch_size: int = 16,
    max_batch_size: int = 4096,
    weight_decay: float = 0.0,
    granularity: str = "row",
    **test_kwargs,
) -> tuple[AdaGradNorm, BatchSizeController]:
    """AdAdaGradNorm (arXiv 2402.11215): an :class:`AdaGradNorm` optimizer and a controller.

    ``params`` is a module or an iterable of parameters; ``test`` is ``"norm"`` or
    ``"inner_product"``; ``test_kwargs`` go to the controller (``eta=`` for the norm
    test, ``theta=``/``nu=`` for the inner-product test); ``granularity`` is
    :class:`AdaGradNorm`'s. Returns ``(optimizer, controller)``.
    """
    params = params.parameters() if isinstance(params, torch.nn.Module) else params
    opt = AdaGradNorm(params, lr=lr, weight_decay=weight_decay, granularity=granularity)
    return opt, _controller(test, initial_batch_size, max_batch_size, test_kwargs)


def adadagrad(
    params: torch.nn.Module | ParamsT,
    *,
    lr: float,
    test: str = "norm",
    initial_batch_size: int = 16,
    max_batch_size: int = 4096,
    weight_decay: float = 0.0,
    **test_kwargs,
) -> tuple[torch.optim.Adagrad, BatchSizeController]:
    """AdAdaGrad (arXiv 2402.11215): coordinate-wise ``torch.optim.Adagrad`` and a controller.

    Same arguments as :func:`adadagradnorm`. The paper pairs AdAdaGrad with a
    coordinate-wise test; pass ``coordinatewise=True`` (our guess at it, see
    :class:`NormTestBatchController`) to use it, otherwise the norm test is used.
    """
    _check_lr(lr, "AdAdaGrad")
    params = params.parameters() if isinstance(params, torch.nn.Module) else params
    opt = torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    return opt, _controller(test, initial_batch_size, max_batch_size, test_kwargs)
