"""Exceptions with messages that name the problem and the fix."""


class LifelongError(Exception):
    """Base class of every error `lifelong` raises on bad input."""


class ConfigError(LifelongError, ValueError):
    """A name, key or value in a configuration is not valid."""


class DataError(LifelongError, ValueError):
    """Data has the wrong shape, labels, or is empty."""


class NonFiniteLossError(LifelongError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class CheckpointError(LifelongError):
    """A checkpoint is missing, corrupt, or does not match the learner."""


class RunDirError(LifelongError):
    """An output folder already holds a different run."""


def unknown_name(kind: str, name: str, valid) -> ConfigError:
    """Build the error for an unknown registry name, listing the valid ones."""
    valid = sorted(valid)
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}")
