"""lifelong: models that keep learning.

The public Python API mirrors the ``lifelong`` command::

    from lifelong import load_dataset, make_scenario, make_learner, run
    stream = make_scenario("class-incremental", load_dataset("mnist"), tasks=5, seed=0)
    result = run(stream, make_learner("er", {"buffer_size": 200}, seed=0))
    print(result.metrics["final_average_accuracy"])

Importing has no side effects (no threads set, nothing downloaded or written); names load on first use.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Dataset": "lifelong.data",
    "load_dataset": "lifelong.data",
    "list_datasets": "lifelong.data",
    "Experience": "lifelong.scenarios",
    "Stream": "lifelong.scenarios",
    "make_scenario": "lifelong.scenarios",
    "list_scenarios": "lifelong.scenarios",
    "Learner": "lifelong.methods",
    "GradientLearner": "lifelong.methods",
    "make_learner": "lifelong.methods",
    "list_methods": "lifelong.methods",
    "register": "lifelong.methods",
    "run": "lifelong.evaluation",
    "Result": "lifelong.evaluation",
    "run_experiment": "lifelong.runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lifelong' has no attribute {name!r}")
