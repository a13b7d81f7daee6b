"""Thread settings.

On small CPU machines the models of continual-learning benchmarks are tiny, and
PyTorch's intra-op thread pool costs more than it gains. PyTorch's CPU wheels run
that pool on GNU OpenMP, whose idle threads spin before they sleep: with 2 intra-op
threads on a 2-core machine, any other busy process makes every small parallel
region wait for a descheduled thread. Measured with ``benchmarks/threads.py``
(finetune on MNIST, see ``benchmarks/README.md``): 2 threads ran 7-66x slower than
1 thread, with or without an extra busy process; 2 threads with
``OMP_WAIT_POLICY=PASSIVE`` took 0.25-2.75x the time of 1 thread (median slower in
10 of 12 cases, small and wide MLPs alike), so only 1 thread is fast throughout.

Defaults, both overridable:

* **one intra-op thread** unless told otherwise (``--threads N`` or
  ``LIFELONG_THREADS``), set by :func:`configure_threads`, which the CLI and
  :func:`lifelong.evaluation.run_experiment` call;
* **passive OpenMP waiting** (``OMP_WAIT_POLICY=PASSIVE``) for runs that raise the
  thread count. OpenMP reads this variable once, when torch is imported, so it
  can only be set by the environment or by :func:`configure_wait_policy` before
  the first ``import torch`` (an ``OMP_WAIT_POLICY`` already in the environment
  is kept). :func:`configure_threads` warns when it is asked for more than one
  thread while torch's pool spins.

Nothing is changed at import time.
"""

from __future__ import annotations

import os
import sys

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
            raise ConfigError(f"LIFELONG_THREADS must be a whole number of threads, got {env!r}; set it like "
                              "LIFELONG_THREADS=1 or unset it") from None
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"threads must lie in [1, {MAX_THREADS}], got {threads}; this machine has "
                          f"{os.cpu_count()} cores")
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

        raise ConfigError(f"OpenMP wait policy must be PASSIVE or ACTIVE, got {chosen!r}; fix or unset the "
                          "OMP_WAIT_POLICY environment variable")
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

        warnings.warn(f"{n} intra-op threads with OpenMP's default (spinning) wait policy can run small "
                      "models 10-30x slower whenever another process uses the CPU; start Python with "
                      "OMP_WAIT_POLICY=PASSIVE (see lifelong.runtime)", RuntimeWarning, stacklevel=2)
    return n
