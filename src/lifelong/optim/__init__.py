"""Optimizers and learning-rate schedules, selectable by name from any method's config."""

from lifelong.optim.registry import OPTIMIZERS, build_optimizer, list_optimizers, register_optimizer

__all__ = ["OPTIMIZERS", "build_optimizer", "list_optimizers", "register_optimizer"]
