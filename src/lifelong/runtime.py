"""Thread settings, and the progress bar of long work inside learners.

On small CPU machines PyTorch's intra-op thread pool costs more than it gains: its GNU OpenMP threads spin
before they sleep, so with 2 threads on 2 cores any other busy process stalls every small parallel region
(``benchmarks/threads.py``: 2 threads ran 7-66x slower than 1; with ``OMP_WAIT_POLICY=PASSIVE`` 0.25-2.75x).
Defaults, both overridable: one intra-op thread (``--threads N`` or ``LIFELONG_THREADS``; set by
:func:`configure_threads`, which the CLI and :func:`lifelong.runner.run_experiment` call), and passive
OpenMP waiting, which must be set before the first ``import torch`` (:func:`configure_wait_policy`; an
``OMP_WAIT_POLICY`` already in the environment is kept). Nothing is changed at import time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

DEFAULT_THREADS = 1
MAX_THREADS = 256  # torch's OpenMP pool crashed (segmentation fault) at 10,000
DEFAULT_WAIT_POLICY = "PASSIVE"


def resolve_threads(threads: int | None = None) -> int:
    """The thread count to use: the argument, else ``LIFELONG_THREADS``, else 1."""
    from lifelong.errors import ConfigError

    if threads is None:
        env = os.environ.get("LIFELONG_THREADS")
        try:
            threads = int(env) if env else DEFAULT_THREADS
        except ValueError:
            raise ConfigError(
                f"LIFELONG_THREADS must be a whole number of threads, got {env!r}; set it like "
                "LIFELONG_THREADS=1 or unset it"
            ) from None
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(
            f"threads must lie in [1, {MAX_THREADS}], got {threads}; this machine has {os.cpu_count()} cores"
        )
    return threads


def configure_wait_policy(policy: str | None = None) -> bool:
    """Ask OpenMP's idle threads to sleep rather than spin (``OMP_WAIT_POLICY``).

    ``policy`` (``"PASSIVE"`` or ``"ACTIVE"``) defaults to an ``OMP_WAIT_POLICY``
    already in the environment, else ``PASSIVE``. Returns True when the setting
    takes effect, i.e. torch has not been imported yet in this process; afterwards
    OpenMP has read its environment and nothing changes (False).
    """
    chosen = (policy or os.environ.get("OMP_WAIT_POLICY") or DEFAULT_WAIT_POLICY).upper()
    if chosen not in ("PASSIVE", "ACTIVE"):
        from lifelong.errors import ConfigError

        raise ConfigError(
            f"OpenMP wait policy must be PASSIVE or ACTIVE, got {chosen!r}; fix or unset the "
            "OMP_WAIT_POLICY environment variable"
        )
    if "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = chosen
    return True


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (see module doc); returns the count set."""
    import torch

    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if n > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        import warnings

        warnings.warn(
            f"{n} intra-op threads with OpenMP's default (spinning) wait policy can run small "
            "models 10-30x slower whenever another process uses the CPU; start Python with "
            "OMP_WAIT_POLICY=PASSIVE (see lifelong.runtime)",
            RuntimeWarning,
            stacklevel=2,
        )
    return n


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, restoring the previous count after.

    For small models one thread is fastest and avoids oversubscription when other
    processes share the cores (see the module docstring).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def progress(total: int, desc: str, unit: str = "step"):  # noqa: ANN201 - a tqdm bar
    """A progress bar for long work inside a learner (tqdm; shown on a terminal only, removed when done)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, disable=None)
