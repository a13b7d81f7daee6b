"""Exceptions with messages that name the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable


class LifelongError(Exception):
    """Base class of every error `lifelong` raises on bad input."""


class ConfigError(LifelongError, ValueError):
    """A name, key or value in a configuration is not valid."""


class DataError(LifelongError, ValueError):
    """Data has the wrong shape, labels, or is empty."""


class NonFiniteLossError(LifelongError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class LearnerError(LifelongError):
    """A learner misbehaved: its predictions hold NaN or have the wrong shape."""


class RunFailedError(LifelongError):
    """Some runs of an experiment failed; the others finished and the report was written.

    ``results`` maps method -> the results of its seeds (failed ones have
    ``status == "failed"``).
    """

    def __init__(self, message: str, results: dict | None = None):
        super().__init__(message)
        self.results = results or {}


class CheckpointError(LifelongError):
    """A checkpoint is missing, corrupt, or does not match the learner."""


class LifelongWarning(UserWarning):
    """Base class of every warning `lifelong` gives: the run goes on, but probably not as the user meant."""


class ScenarioMismatchWarning(LifelongWarning):
    """A method runs on a scenario other than the one it is built for (e.g. a task-incremental method on a
    class-incremental stream, where no task id reaches it at test time)."""


class RunDirError(LifelongError):
    """An output folder already holds a different run, is locked by another process, or cannot be written."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """Build the error for an unknown registry name, listing the valid ones."""
    valid = sorted(valid)
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}")


class AdapterError(LifelongError, ValueError):
    """An adapter operation is not valid in the adapter's state (merged twice, NaN weights, unknown name)."""
