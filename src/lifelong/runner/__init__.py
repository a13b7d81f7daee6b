"""Experiments: many methods x seeds on one scenario, in one folder, resumable (DESIGN §5).

The layer above :mod:`lifelong.evaluation`: it parses ``--set`` overrides, loads the
data, builds the scenario and the learners, runs the grid with :func:`lifelong.evaluation.run`
and writes the report. The ``lifelong run`` command is a thin layer over it.
"""

from lifelong.runner.experiment import (
    DEFAULT_DATA,
    DEFAULT_METHODS,
    DEFAULT_SCENARIO,
    resume_experiment,
    run_experiment,
)
from lifelong.runner.folders import (
    EXPERIMENT_FORMAT,
    experiment_files,
    experiment_group,
    experiment_runs,
    read_invocation,
)
from lifelong.runner.sets import parse_sets

__all__ = [
    "run_experiment",
    "resume_experiment",
    "parse_sets",
    "DEFAULT_METHODS",
    "DEFAULT_SCENARIO",
    "DEFAULT_DATA",
    "EXPERIMENT_FORMAT",
    "experiment_files",
    "experiment_group",
    "experiment_runs",
    "read_invocation",
]
