"""Running a learner over a stream, metrics, results files, checkpoints and reports.

Knows only the :class:`~lifelong.methods.Learner` protocol; experiments over many
methods and seeds live one layer up, in :mod:`lifelong.runner`.
"""

from lifelong.evaluation.loop import accuracy, run
from lifelong.evaluation.metrics import METRIC_NAMES, all_metrics
from lifelong.evaluation.result import Result

__all__ = ["run", "accuracy", "Result", "METRIC_NAMES", "all_metrics"]
