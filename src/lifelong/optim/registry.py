"""Name -> optimizer factory registry used by every gradient method.

A factory takes ``(params, lr=..., momentum=..., weight_decay=...)`` and returns a
``torch.optim.Optimizer``. Factories ignore keyword arguments that do not apply to
them (``momentum`` for Adam, for instance).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from lifelong.errors import ConfigError, unknown_name

OptimizerFactory = Callable[..., torch.optim.Optimizer]
OPTIMIZERS: dict[str, OptimizerFactory] = {}


def register_optimizer(name: str) -> Callable[[OptimizerFactory], OptimizerFactory]:
    """Decorator registering an optimizer factory under ``name``."""

    def wrap(factory: OptimizerFactory) -> OptimizerFactory:
        if name in OPTIMIZERS:
            raise ConfigError(f"optimizer {name!r} is registered twice")
        OPTIMIZERS[name] = factory
        return factory

    return wrap


def list_optimizers() -> list[str]:
    """Names accepted by :func:`build_optimizer`."""
    _load_builtin()
    return sorted(OPTIMIZERS)


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Create the optimizer registered as ``name`` (or named by an optimizer spec) over ``params``.

    Raises :class:`ConfigError` for an unknown name, a non-positive learning rate or a
    setting the optimizer refuses (negative momentum, say).
    """
    _load_builtin()
    from lifelong.optim.spec import parse_optimizer_spec

    name = parse_optimizer_spec(name).name  # a spec's components (adaptive batch) belong to the training loop
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, OPTIMIZERS)
    if not lr > 0:
        raise ConfigError(f"learning rate must be > 0, got {lr}; set method.lr to a positive number")
    try:
        return OPTIMIZERS[name](params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    except ValueError as e:  # torch's own checks ("Invalid momentum value: -3.0")
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(
            f"optimizer {name!r} refused its settings: {e}; fix method.lr / method.momentum / method.weight_decay"
        ) from None


def _load_builtin() -> None:
    # Import the modules that register optimizers; cheap after the first call.
    from lifelong.optim import adadagrad, builtin, lamb  # noqa: F401
