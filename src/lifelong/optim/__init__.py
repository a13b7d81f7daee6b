"""Optimizers and learning-rate schedules, selectable by name from any method's config.

- :class:`Lamb` (LAMB, arXiv 1904.00962; registered ``"lamb"``)
- :class:`AdaGradNorm` (registered ``"adagradnorm"``) and the adaptive batch-size
  controllers of AdAdaGrad (arXiv 2402.11215)
- :func:`build_schedule`: constant / linear / cosine / refined schedules (arXiv 2310.07831)
"""

from lifelong.optim.adadagrad import (
    AdaGradNorm,
    BatchSizeController,
    InnerProductTestBatchController,
    NormTestBatchController,
    adadagrad,
    adadagradnorm,
    per_sample_gradients,
)
from lifelong.optim.lamb import Lamb, lamb_param_groups
from lifelong.optim.registry import OPTIMIZERS, build_optimizer, list_optimizers, register_optimizer
from lifelong.optim.schedules import (
    MultiplierSchedule,
    build_schedule,
    global_grad_norm,
    list_schedules,
    refined_schedule,
    schedule_multipliers,
)

__all__ = [
    "OPTIMIZERS",
    "build_optimizer",
    "list_optimizers",
    "register_optimizer",
    "Lamb",
    "lamb_param_groups",
    "AdaGradNorm",
    "BatchSizeController",
    "NormTestBatchController",
    "InnerProductTestBatchController",
    "adadagrad",
    "adadagradnorm",
    "per_sample_gradients",
    "MultiplierSchedule",
    "build_schedule",
    "global_grad_norm",
    "list_schedules",
    "refined_schedule",
    "schedule_multipliers",
]
