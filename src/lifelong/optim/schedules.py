"""Learning-rate schedules: constant, cosine, linear decay, and refined-from-gradient-norms.

When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement (arXiv 2310.07831) recommends linear
decay and refines one run's gradient norms into the next run's schedule (:func:`refined_schedule`; with
constant norms it is exactly linear decay). Every schedule is a ``torch.optim.lr_scheduler.LRScheduler``
stepped once after each optimizer step; one built for ``total_steps`` raises :class:`ConfigError` when stepped
past its end.

Notes: docs/papers/refined-schedules.md
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from lifelong.errors import ConfigError, unknown_name

__all__ = [
    "MultiplierSchedule",
    "build_schedule",
    "list_schedules",
    "refined_schedule",
    "schedule_multipliers",
    "global_grad_norm",
    "DEFAULT_SMOOTHING",
]

#: Median-filter width as a fraction of the run length (``sigma2 = 0.1`` in the
#: official ``visual.py``).
DEFAULT_SMOOTHING = 0.1


def refined_schedule(
    grad_norms: Sequence[float] | np.ndarray,
    *,
    smoothing: float = DEFAULT_SMOOTHING,
    power: float = 2.0,
    total_steps: int | None = None,
) -> np.ndarray:
    """Refined lr multipliers from an earlier run's gradient norms (arXiv 2310.07831).

    Steps (following the paper and its ``find_closed_form_schedule``):

    1. smooth the norms with a median filter of width ``2*(int(smoothing*T)//2)+1``,
       reflect-padding the end of the sequence (the official README's recipe);
       ``smoothing=0`` disables it;
    2. if ``total_steps`` differs from the number of norms, resample linearly to it;
    3. ``w_t = G_t^-power`` (``power=2`` for SGD-type methods; the paper's L1-norm
       variant for Adam-type methods uses ``power=1`` on L1 norms);
    4. ``m_t = w_t * sum_{p>t} w_p`` (so ``m_{T-1} = 0``), divided by ``max_t m_t``.

    Returns an array of ``T`` multipliers in [0, 1] with maximum 1. Constant norms give
    exactly ``1 - t/(T-1)``. Norms of zero after smoothing are floored at ``1e-12`` times
    the largest norm.

    Raises:
        ConfigError: fewer than 2 norms, a non-finite or negative norm, all norms zero,
            or bad ``smoothing``/``power``/``total_steps``.
    """
    g = np.asarray(grad_norms, dtype=np.float64).reshape(-1)
    if g.size < 2:
        raise ConfigError(
            f"refined schedule: need the gradient norms of at least 2 steps, got {g.size}; "
            f"record one norm per step of an earlier run"
        )
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ConfigError(
            "refined schedule: gradient norms must be finite and >= 0; drop the NaN/inf entries "
            "(e.g. skipped steps) from the recorded norms"
        )
    if not g.max() > 0:
        raise ConfigError("refined schedule: all gradient norms are zero; record the norms of a run that trained")
    if not (math.isfinite(smoothing) and 0 <= smoothing <= 1):
        raise ConfigError(f"refined schedule: smoothing must be in [0, 1], got {smoothing!r}; the paper uses 0.1")
    if not (math.isfinite(power) and power > 0):
        raise ConfigError(f"refined schedule: power must be > 0, got {power!r}; use 2 (L2 norms) or 1 (L1 norms)")
    width = 2 * (int(smoothing * g.size) // 2) + 1
    if width > 1:
        from scipy.ndimage import median_filter

        pad = 2 * width
        g = median_filter(np.pad(g, (0, pad), mode="reflect"), size=width, mode="nearest")[:-pad]
    if total_steps is not None:
        _check_total_steps(total_steps)
        if total_steps != g.size:
            g = np.interp(np.linspace(0.0, 1.0, total_steps), np.linspace(0.0, 1.0, g.size), g)
    g = np.maximum(g, 1e-12 * g.max())
    if g.size < 2:
        return np.ones(g.size)
    w = g ** (-power)
    tail = np.cumsum(w[::-1])[::-1]  # tail[t] = sum_{p >= t} w_p
    m = np.zeros_like(w)
    m[:-1] = w[:-1] * tail[1:]
    return m / m.max()


def global_grad_norm(parameters: Iterable[torch.nn.Parameter], norm_type: float = 2.0) -> float:
    """The norm of all gradients together (what refinement records each step; arXiv 2310.07831).

    ``norm_type=2`` for SGD-type runs, ``1`` for the paper's L1 variant (Adam-type).
    Parameters without a gradient are skipped.
    """
    grads = [p.grad.detach().reshape(-1) for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.cat(grads), ord=norm_type))


def _check_total_steps(total_steps: int) -> None:
    if not (isinstance(total_steps, (int, np.integer)) and not isinstance(total_steps, bool) and total_steps >= 1):
        raise ConfigError(
            f"total_steps must be an integer >= 1, got {total_steps!r}; pass the number of optimizer steps of the run"
        )


def _warmup(t: np.ndarray, warmup_steps: int) -> np.ndarray:
    return np.where(t < warmup_steps, (t + 1) / (warmup_steps + 1), 1.0)


def _constant(total_steps: int, warmup_steps: int, **_) -> np.ndarray:
    t = np.arange(total_steps, dtype=np.float64)
    return _warmup(t, warmup_steps)


def _linear(total_steps: int, warmup_steps: int, **_) -> np.ndarray:
    t = np.arange(total_steps, dtype=np.float64)
    if total_steps == 1:  # a one-step run uses the base lr
        return np.ones(1)
    span = max(1, total_steps - 1 - warmup_steps)
    decay = np.clip((total_steps - 1 - t) / span, 0.0, 1.0)
    return np.where(t < warmup_steps, _warmup(t, warmup_steps), decay)


def _cosine(total_steps: int, warmup_steps: int, **_) -> np.ndarray:
    t = np.arange(total_steps, dtype=np.float64)
    span = max(1, total_steps - 1 - warmup_steps)
    frac = np.clip((t - warmup_steps) / span, 0.0, 1.0)
    return np.where(t < warmup_steps, _warmup(t, warmup_steps), 0.5 * (1.0 + np.cos(math.pi * frac)))


def _refined(
    total_steps: int,
    warmup_steps: int,
    *,
    grad_norms: Sequence[float] | np.ndarray | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
    power: float = 2.0,
    **_,
) -> np.ndarray:
    if grad_norms is None:
        raise ConfigError(
            "the 'refined' schedule needs grad_norms: the per-step gradient norms of an earlier "
            "run (record them with lifelong.optim.schedules.global_grad_norm)"
        )
    if warmup_steps:
        raise ConfigError(
            "the 'refined' schedule makes its own warm-up from the gradient norms; leave warmup_steps at 0"
        )
    return refined_schedule(grad_norms, smoothing=smoothing, power=power, total_steps=total_steps)


_SCHEDULES: dict[str, Callable[..., np.ndarray]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
    "refined": _refined,
}
# Value set by the scheduler step that follows the last optimizer step.
_FINAL = {"constant": 1.0, "linear": 0.0, "cosine": 0.0, "refined": 0.0}


def list_schedules() -> list[str]:
    """Names accepted by :func:`build_schedule`."""
    return sorted(_SCHEDULES)


def schedule_multipliers(
    name: str,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    grad_norms: Sequence[float] | np.ndarray | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
    power: float = 2.0,
) -> np.ndarray:
    """The ``total_steps`` lr multipliers of schedule ``name`` (a pure function).

    See :func:`build_schedule` for the arguments and errors.
    """
    if name not in _SCHEDULES:
        raise unknown_name("schedule", name, _SCHEDULES)
    _check_total_steps(total_steps)
    if not (isinstance(warmup_steps, (int, np.integer)) and 0 <= warmup_steps < total_steps):
        raise ConfigError(
            f"warmup_steps must be an integer in [0, total_steps) = [0, {total_steps}), "
            f"got {warmup_steps!r}; use fewer warm-up steps than training steps"
        )
    return _SCHEDULES[name](
        int(total_steps), int(warmup_steps), grad_norms=grad_norms, smoothing=smoothing, power=power
    )


class MultiplierSchedule(LRScheduler):
    """An ``LRScheduler`` that sets ``lr = base_lr * multipliers[t]`` (papers 33/34 schedules).

    ``t`` is the number of ``step()`` calls so far (0 at construction). ``multipliers``
    has one entry per optimizer step; ``final`` is the multiplier set by the step after
    the last one. One more ``step()`` raises :class:`ConfigError`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multipliers: Sequence[float] | np.ndarray,
        *,
        final: float | None = None,
        name: str = "custom",
        last_epoch: int = -1,
    ):
        m = np.asarray(multipliers, dtype=np.float64).reshape(-1)
        if m.size == 0 or not np.all(np.isfinite(m)) or np.any(m < 0):
            raise ConfigError(f"schedule {name!r}: multipliers must be a non-empty sequence of finite numbers >= 0")
        last = m[-1] if final is None else float(final)
        self.name = name
        self.total_steps = int(m.size)
        # A tensor (not a numpy array) so that the state dict loads with weights_only=True.
        self.multipliers = torch.tensor(np.append(m, last), dtype=torch.float64)
        super().__init__(optimizer, last_epoch)

    def step(self, epoch: int | None = None) -> None:
        """Advance one optimizer step; raises ConfigError past ``total_steps``."""
        if epoch is not None:
            raise ConfigError(
                f"schedule {self.name!r}: step(epoch) is not supported; call step() once per optimizer step"
            )
        if self.last_epoch + 1 > self.total_steps:
            raise ConfigError(
                f"schedule {self.name!r} was built for {self.total_steps} steps and was asked for "
                f"step {self.last_epoch + 1}; build it with total_steps equal to the number of "
                f"optimizer steps of the run"
            )
        super().step()

    def get_lr(self) -> list[float]:
        """Learning rates for the current step."""
        mult = float(self.multipliers[self.last_epoch])
        return [base * mult for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


def build_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    grad_norms: Sequence[float] | np.ndarray | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
    power: float = 2.0,
) -> MultiplierSchedule:
    """Build the learning-rate schedule ``name`` for a run of ``total_steps`` optimizer steps.

    Names (see :func:`list_schedules`):

    - ``"constant"``: the base lr (after the optional warm-up);
    - ``"linear"``: warm-up, then linear decay to 0 at the last step — the default the
      refinement paper (arXiv 2310.07831) derives from last-iterate theory; LAMB (arXiv 1904.00962)
      trains with warm-up + polynomial (here linear) decay;
    - ``"cosine"``: warm-up, then half-cosine decay to 0 at the last step (baseline);
    - ``"refined"``: :func:`refined_schedule` of ``grad_norms`` (one per step of an
      earlier run, resampled to ``total_steps``); makes its own warm-up.

    Raises:
        ConfigError: unknown name, ``total_steps < 1``, ``warmup_steps`` outside
            ``[0, total_steps)``, ``"refined"`` without ``grad_norms``, bad norms.
    """
    mult = schedule_multipliers(
        name, total_steps, warmup_steps=warmup_steps, grad_norms=grad_norms, smoothing=smoothing, power=power
    )
    return MultiplierSchedule(optimizer, mult, final=_FINAL[name], name=name)
