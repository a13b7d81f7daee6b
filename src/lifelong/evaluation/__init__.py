"""Running learners over streams, metrics, results files, checkpoints and reports."""

from lifelong.evaluation.experiment import DEFAULT_METHODS, run_experiment
from lifelong.evaluation.loop import accuracy, run
from lifelong.evaluation.metrics import METRIC_NAMES, all_metrics
from lifelong.evaluation.result import Result

__all__ = ["run", "accuracy", "Result", "run_experiment", "DEFAULT_METHODS", "METRIC_NAMES", "all_metrics"]
