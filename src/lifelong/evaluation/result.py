"""The :class:`Result` of running a learner over a stream."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np

from lifelong.evaluation.metrics import all_metrics
from lifelong.fileio import finite_or_none

RESULTS_FORMAT = 1


def package_versions() -> dict[str, str]:
    """Versions of lifelong, Python, torch, numpy, for results files."""
    import torch

    import lifelong

    return {
        "lifelong": lifelong.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


@dataclass
class Result:
    """Accuracy matrix, metrics and costs of one (method, seed) run.

    Attributes:
        accuracy_matrix: ``(k, T)`` array, ``k`` experiences learned so far.
        initial_accuracy: accuracy on each experience before any learning.
        learn_seconds, eval_seconds: wall seconds per experience.
        samples_seen: cumulative training examples processed (replayed ones included).
        trainable_parameters, total_parameters: after the last experience.
        peak_memory_mb: peak resident memory of the process (MB) so far.
        status: ``complete``, ``running`` or ``failed``; ``error`` the failure's message.
        data_info: facts about how the data was obtained (``feature_cache``: whether a
            frozen encoder's outputs came from the cache and the encoding seconds saved).
    """

    method: str
    seed: int
    stream: dict
    config: dict
    accuracy_matrix: np.ndarray
    initial_accuracy: np.ndarray
    learn_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    samples_seen: list[int] = field(default_factory=list)
    trainable_parameters: int = 0
    total_parameters: int = 0
    peak_memory_mb: float = 0.0
    status: str = "running"
    error: str | None = None
    data_info: dict = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float | None]:
        """Every metric of :mod:`lifelong.evaluation.metrics` (empty before the first experience)."""
        if len(self.accuracy_matrix) == 0:
            return {}
        return all_metrics(self.accuracy_matrix, self.initial_accuracy)

    def to_dict(self) -> dict:
        """The ``results.json`` document (strict JSON: an undefined number is ``null``)."""
        return finite_or_none(
            {
                "format": RESULTS_FORMAT,
                "method": self.method,
                "seed": self.seed,
                "scenario": self.stream.get("scenario"),
                "data": self.stream.get("data"),
                "status": self.status,
                "error": self.error,
                "config": self.config,
                "stream": self.stream,
                "accuracy_matrix": np.asarray(self.accuracy_matrix).tolist(),
                "initial_accuracy": np.asarray(self.initial_accuracy).tolist(),
                "metrics": self.metrics,
                "costs": {
                    "learn_seconds": list(self.learn_seconds),
                    "eval_seconds": list(self.eval_seconds),
                    "samples_seen": list(self.samples_seen),
                    "trainable_parameters": self.trainable_parameters,
                    "total_parameters": self.total_parameters,
                    "peak_memory_mb": self.peak_memory_mb,
                },
                "data_info": dict(self.data_info),
                "versions": package_versions(),
            }
        )

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        """Rebuild from a ``results.json`` document."""
        T = d["stream"]["num_experiences"]
        R = np.asarray(d["accuracy_matrix"], dtype=np.float64).reshape(-1, T)
        c = d["costs"]
        return cls(
            d["method"],
            d["seed"],
            d["stream"],
            d["config"],
            R,
            np.asarray(d["initial_accuracy"], dtype=np.float64),
            list(c["learn_seconds"]),
            list(c["eval_seconds"]),
            list(c["samples_seen"]),
            c["trainable_parameters"],
            c["total_parameters"],
            c["peak_memory_mb"],
            d["status"],
            d.get("error"),
            dict(d.get("data_info") or {}),
        )
