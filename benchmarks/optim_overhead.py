"""Step-time overhead of AdAdaGrad's norm test (arXiv 2402.11215) against plain AdaGradNorm.

One training step is timed in three ways on the same model, batch and optimizer:

- ``plain``: ``zero_grad``, forward, backward, ``AdaGradNorm.step()``;
- ``norm test``: ``NormTestBatchController.update(..., set_grad=True)`` — per-sample
  gradients of the whole batch with ``torch.func.vmap(grad(...))``, the test, the batch-mean
  gradient written to ``.grad`` — then ``step()``;
- ``norm test, 128 samples``: the same with ``max_test_samples=128``: per-sample gradients
  of at most 128 samples plus one ordinary backward over the batch.

Modes are interleaved round by round and the median per-step time over rounds is
reported. Time is the process's CPU time (``time.process_time``) with one torch thread
by default, which measures the work done even when other jobs share the cores; pass
``--clock wall`` for wall-clock time.

    .venv/bin/python benchmarks/optim_overhead.py              # print the table
    .venv/bin/python benchmarks/optim_overhead.py --write      # also write benchmarks/optim_results.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lifelong.optim import AdaGradNorm, NormTestBatchController

CONFIGS = [
    # name, layer sizes, batch sizes
    ("MLP 64-64-10 (digits size)", (64, 64, 10), (16, 128, 512)),
    ("MLP 64-256-256-10", (64, 256, 256, 10), (64, 512)),
]


def _mlp(sizes):
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _step_fn(mode, model, opt, x, y):
    if mode == "plain":

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        return step
    ctl = NormTestBatchController(2, 10**9, eta=0.3, max_test_samples=128 if mode == "subset" else None)

    def step():
        ctl.update(model, F.cross_entropy, x, y, set_grad=True)
        opt.step()

    return step


def measure(sizes, batch, *, rounds: int, steps: int, clock=time.process_time) -> dict[str, float]:
    """Median seconds per step of each mode."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, sizes[0], generator=g)
    y = torch.randint(0, sizes[-1], (batch,), generator=g)
    modes = ("plain", "full", "subset") if batch > 128 else ("plain", "full")
    fns = {}
    for mode in modes:
        model = _mlp(sizes)
        fns[mode] = _step_fn(mode, model, AdaGradNorm(model.parameters(), lr=0.01), x, y)
        for _ in range(3):  # warm-up
            fns[mode]()
    times = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            t0 = clock()
            for _ in range(steps):
                fns[mode]()
            times[mode].append((clock() - t0) / steps)
    return {m: statistics.median(v) for m, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--write", action="store_true", help="write benchmarks/optim_results.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, sizes, batches in CONFIGS:
        for b in batches:
            t = measure(
                sizes,
                b,
                rounds=args.rounds,
                steps=args.steps,
                clock=time.process_time if args.clock == "cpu" else time.perf_counter,
            )
            sub = t.get("subset")
            rows.append(
                f"| {name} | {b} | {t['plain'] * 1e3:.2f} | {t['full'] * 1e3:.2f} | "
                f"{t['full'] / t['plain']:.2f}x | "
                + (f"{sub * 1e3:.2f} ({sub / t['plain']:.2f}x)" if sub is not None else "—")
                + " |"
            )
            print(rows[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = "\n".join(
        [
            "| model | batch | plain AdaGradNorm step (ms) | with norm test (ms) | ratio "
            "| norm test on 128 samples (ms, ratio) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    cmd = (
        f".venv/bin/python benchmarks/optim_overhead.py --rounds {args.rounds} --steps {args.steps} "
        f"--threads {args.threads} --clock {args.clock} --write"
    )
    clock = "process CPU" if args.clock == "cpu" else "wall-clock"
    text = f"""# Optimizer benchmarks: AdAdaGrad norm-test overhead (AdAdaGrad, arXiv 2402.11215)

Command: `{cmd}`

Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} (CPU), {args.threads} thread(s);
1-minute load average at the end of the run: {load:.1f} (the machine was shared). Median over
{args.rounds} interleaved rounds of {args.steps} steps each; {clock} time.

A step = one optimizer step on a fixed batch. "with norm test" computes the per-sample
gradients of the whole batch with `torch.func.vmap(grad(...))` (no Python loop over
samples), runs the norm test, and uses the mean of the per-sample gradients as the step's
gradient (no second backward). "on 128 samples" uses `max_test_samples=128`: per-sample
gradients of 128 samples plus one ordinary backward.

{table}
"""
    print()
    print(text)
    if args.write:
        Path(__file__).with_name("optim_results.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
