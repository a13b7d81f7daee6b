"""Thread defaults: torch intra-op threads 1 vs 2 and the OpenMP wait policy, idle and under load.

PyTorch's CPU wheel runs its intra-op pool on GNU OpenMP (libgomp), which reads
``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` when it is loaded, i.e. at ``import torch``.
Each configuration therefore runs in its own worker process started with its
environment; the workers stay alive and are driven over a pipe, so the
configurations take turns run by run (rotating order) and share the machine's
background load.

Configurations (intra-op threads, environment):

* ``t1``            1 thread  (lifelong's default), default wait policy
* ``t2``            2 threads, default wait policy (libgomp spins before sleeping)
* ``t2-passive``    2 threads, ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once)
* ``t2-spin10k``    2 threads, ``GOMP_SPINCOUNT=10000`` (a short spin)

Workloads (``run(stream, make_learner("finetune", ...))`` on the **first 2
experiences** of the default stream, class-incremental MNIST subset, 5 tasks: 1,600
training examples; wall seconds of the whole run, evaluation included). The stream
is cut and the epochs lowered from 3 to 1 so that the slow configurations fit the
time budget; the per-step cost is what is compared:

* ``small``: the default finetune MLP (784-256-256-10), batch 32, 1 epoch (50 steps),
* ``large``: a wide MLP (784-1024-1024-10), batch 256, 1 epoch (7 steps), where one
  step is big enough that a second thread can pay off.

A cell (configuration x workload x load) stops being repeated once its runs have
taken ``--cell-budget`` seconds in all (at least one run), so the slowest cells may
hold fewer runs than ``--repeats``; the table gives n.

Load conditions: ``idle`` (no load added by this script; other users of the machine
may be running, see the load averages printed) and ``busy`` (a child process
busy-looping on one core, started before and stopped after the condition's runs;
it exits by itself after ``--load-limit`` seconds at the latest).

Run: ``.venv/bin/python benchmarks/threads.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "t1": (1, {}),
    "t2": (2, {}),
    "t2-passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "t2-spin10k": (2, {"GOMP_SPINCOUNT": "10000"}),
}
WORKLOADS = {
    "small": {"epochs": 1},
    "large": {"epochs": 1, "hidden": (1024, 1024), "batch_size": 256},
}
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME")


def worker(threads: int) -> None:
    """Child process: build the stream, then run the workload named on each stdin line."""
    import warnings

    import torch

    from lifelong.data import load_dataset
    from lifelong.evaluation import run
    from lifelong.methods import make_learner
    from lifelong.runtime import configure_threads
    from lifelong.scenarios import Stream, class_incremental

    with warnings.catch_warnings():  # the spin-policy warning is what t2 / t2-spin10k measure
        warnings.simplefilter("ignore", RuntimeWarning)
        configure_threads(threads)
    full = class_incremental(load_dataset("mnist"), tasks=5, seed=0)
    stream = Stream(full.scenario, full.experiences[:2], full.class_order, full.class_names, full.params)

    def once(name):
        t0 = time.perf_counter()
        run(stream, make_learner("finetune", WORKLOADS[name], seed=0), progress=False)
        return time.perf_counter() - t0

    # warm-up (lazy imports, allocator): two big steps on one experience
    run(
        Stream(full.scenario, full.experiences[:1], full.class_order, full.class_names, full.params),
        make_learner("finetune", {"epochs": 1, "batch_size": 512}, seed=0),
        progress=False,
    )
    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        print(json.dumps({"seconds": once(cmd)}), flush=True)


def start_load(limit: float) -> subprocess.Popen:
    """A child process that busy-loops on one core for at most ``limit`` seconds."""
    code = f"import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    p.add_argument(
        "--cell-budget",
        type=float,
        default=10.0,
        help="stop repeating a cell once its runs took this many seconds in all",
    )
    p.add_argument("--load-limit", type=float, default=120.0, help="the busy loop's own time limit (s)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        worker(args.worker)
        return 0

    names = args.configs.split(",")
    base_env = {k: v for k, v in os.environ.items() if k not in OMP_VARS and k != "LIFELONG_THREADS"}
    procs = {}
    t_start = time.perf_counter()
    print(f"cores: {os.cpu_count()}, load average at start: {loadavg()}", flush=True)
    try:
        for n in names:
            threads, extra = CONFIGS[n]
            procs[n] = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", str(threads)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**base_env, **extra},
            )
        for n, pr in procs.items():
            info = json.loads(pr.stdout.readline())
            assert info["ready"] and info["threads"] == CONFIGS[n][0], info
        print(f"workers ready after {time.perf_counter() - t_start:.1f} s", flush=True)

        times = {(c, w, l): [] for c in names for w in WORKLOADS for l in ("idle", "busy")}
        k = 0
        for r in range(args.repeats):
            for load in ("idle", "busy"):
                loader = start_load(args.load_limit) if load == "busy" else None
                try:
                    if loader is not None:
                        time.sleep(0.3)
                    la = loadavg()
                    for w in WORKLOADS:
                        order = names[k % len(names) :] + names[: k % len(names)]
                        k += 1
                        for c in order:
                            if sum(times[(c, w, load)]) > args.cell_budget:
                                continue
                            procs[c].stdin.write(w + "\n")
                            procs[c].stdin.flush()
                            times[(c, w, load)].append(json.loads(procs[c].stdout.readline())["seconds"])
                finally:
                    if loader is not None:
                        stop(loader)
                print(
                    f"repeat {r} {load:4s} (load avg {la}): "
                    + "  ".join(
                        f"{c}/{w} {times[(c, w, load)][-1]:.2f}"
                        for w in WORKLOADS
                        for c in names
                        if len(times[(c, w, load)]) == r + 1
                    ),
                    flush=True,
                )
    finally:
        for pr in procs.values():
            if pr.poll() is None:
                try:
                    pr.stdin.write("quit\n")
                    pr.stdin.flush()
                except OSError:
                    pass
                if not _wait(pr, 5):
                    stop(pr)

    print(f"\nload average at end: {loadavg()}; total {time.perf_counter() - t_start:.1f} s")
    print(
        f"median wall seconds of a finetune run [min-max] (n runs, at most {args.repeats}); "
        "x = median / median of t1 in the same column"
    )
    cols = [(w, l) for w in WORKLOADS for l in ("idle", "busy")]
    print(f"{'config':12s} " + " ".join(f"{w + '/' + l:>29s}" for w, l in cols))
    for c in names:
        cells = []
        for w, l in cols:
            xs = times[(c, w, l)]
            m = statistics.median(xs)
            ref = statistics.median(times[("t1", w, l)]) if "t1" in names else m
            cells.append(f"{m:6.2f} [{min(xs):5.2f}-{max(xs):5.2f}] n{len(xs)} x{m / ref:5.2f}")
        print(f"{c:12s} " + " ".join(f"{s:>29s}" for s in cells))
    return 0


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


if __name__ == "__main__":
    sys.exit(main())
