"""Scenarios turn a dataset into a :class:`Stream` of :class:`Experience` objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lifelong.errors import unknown_name
from lifelong.scenarios.cfsl import cfsl
from lifelong.scenarios.fewshot import few_shot_incremental
from lifelong.scenarios.hierarchical import hierarchical
from lifelong.scenarios.incremental import class_incremental, domain_incremental, online, task_incremental
from lifelong.scenarios.stream import Experience, Stream
from lifelong.scenarios.taskfree import task_free
from lifelong.values import checked_kwargs

if TYPE_CHECKING:
    from lifelong.data import Dataset

SCENARIOS: dict[str, Callable[..., Stream]] = {
    "class-incremental": class_incremental,
    "task-incremental": task_incremental,
    "domain-incremental": domain_incremental,
    "online": online,
    "task-free": task_free,
    "few-shot-incremental": few_shot_incremental,
    "hierarchical": hierarchical,
    "cfsl": cfsl,
}


def list_scenarios() -> list[str]:
    """Names accepted by :func:`make_scenario`."""
    return sorted(SCENARIOS)


def register_scenario(name: str, fn: Callable[..., Stream]) -> None:
    """Make a scenario function available by ``name``."""
    SCENARIOS[name] = fn


def make_scenario(name: str, data: Dataset, **kwargs) -> Stream:
    """Build the scenario registered as ``name`` over ``data``.

    Unknown arguments and values of the wrong type (``tasks="abc"``) stop with one
    :class:`~lifelong.errors.ConfigError` listing the valid keys.
    """
    if name not in SCENARIOS:
        raise unknown_name("scenario", name, SCENARIOS)
    fn = SCENARIOS[name]
    return fn(data, **checked_kwargs(fn, kwargs, kind="scenario", name=name, skip=1))


__all__ = [
    "Experience",
    "Stream",
    "SCENARIOS",
    "list_scenarios",
    "make_scenario",
    "register_scenario",
    "class_incremental",
    "task_incremental",
    "domain_incremental",
    "online",
    "few_shot_incremental",
    "hierarchical",
]
