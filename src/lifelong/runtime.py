"""Thread settings.

On small CPU machines the models of continual-learning benchmarks are tiny, and
PyTorch's intra-op thread pool costs more than it gains: with 2 intra-op threads on
a 2-core machine, any other busy process makes each small matmul wait for a core
(see ``benchmarks/README.md``). ``lifelong`` therefore runs with one intra-op
thread unless told otherwise (``--threads N`` or ``LIFELONG_THREADS``). Nothing is
changed at import time: :func:`configure_threads` is called by the CLI and by
:func:`lifelong.evaluation.run_experiment`.
"""

from __future__ import annotations

import os

DEFAULT_THREADS = 1


def resolve_threads(threads: int | None = None) -> int:
    """The thread count to use: the argument, else ``LIFELONG_THREADS``, else 1."""
    if threads is None:
        env = os.environ.get("LIFELONG_THREADS")
        threads = int(env) if env else DEFAULT_THREADS
    if threads < 1:
        from lifelong.errors import ConfigError

        raise ConfigError(f"threads must be >= 1, got {threads}")
    return threads


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (see module doc); returns the count set."""
    import torch

    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
