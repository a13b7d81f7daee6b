"""Continual-learning methods: one file each, registered by name.

Each module defines a learner class decorated with ``@register("name")`` and a
config dataclass. :func:`make_learner` builds one by name; :func:`list_methods`
lists them (the modules are imported on first use, not at package import).
"""

from lifelong.methods.base import ClassTracker, GradientConfig, GradientLearner, Learner
from lifelong.methods.config import MethodConfig, build_config, config_fields, hp
from lifelong.methods.registry import (
    INPUT_KINDS,
    METHODS,
    check_inputs,
    get_method,
    input_kind,
    list_methods,
    make_learner,
    method_inputs,
    register,
)

__all__ = [
    "Learner",
    "GradientLearner",
    "GradientConfig",
    "ClassTracker",
    "MethodConfig",
    "hp",
    "build_config",
    "config_fields",
    "METHODS",
    "register",
    "get_method",
    "list_methods",
    "make_learner",
    "INPUT_KINDS",
    "check_inputs",
    "input_kind",
    "method_inputs",
]
