"""ER cost as its replay buffer fills, and buffer insert/sample cost against capacity.

Part 1 — ER on a long stream: class-incremental MNIST subset with 10 tasks (one
class each), the stream passed over three times (30 experiences of ~400 examples,
default ER settings: 3 epochs, batch 32, replay batch 32). Every optimizer step
offers its 32 stream examples to the buffer (~1,200 offers per experience), so a
buffer of 200 is full during experience 0, one of 2,000 during experience 1 and one
of 20,000 (reservoir only, to show the filling regime for longer) during
experience 16. The learn seconds per experience should stay flat (each step always
replays 32 examples, whatever the buffer size). Reported: per-experience medians
over ``--repeats`` runs, and the ratio (median of the last 10 experiences) /
(median of experiences 1-4).

Part 2 — microbenchmarks of ``ReservoirBuffer`` and ``ClassBalancedBuffer``:
microseconds per ``add`` of a 32-example MNIST batch into a *full* buffer, and per
``sample(32)``, for capacities 200 ... 100,000 (10 classes; class-balanced also with
100 classes).

Run: ``.venv/bin/python benchmarks/er_buffer_scaling.py [--repeats 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import numpy as np
import torch

from lifelong.data import load_dataset
from lifelong.evaluation import run
from lifelong.memory.buffer import ClassBalancedBuffer, ReservoirBuffer
from lifelong.methods import make_learner
from lifelong.runtime import configure_threads
from lifelong.scenarios import Stream, class_incremental


def repeated_stream(passes: int = 3) -> Stream:
    """Class-incremental MNIST (10 tasks) with its experiences repeated ``passes`` times."""
    base = class_incremental(load_dataset("mnist"), tasks=10, seed=0)
    exps = [dataclasses.replace(e, index=p * len(base) + i)
            for p in range(passes) for i, e in enumerate(base.experiences)]
    return Stream(base.scenario, exps, base.class_order, base.class_names, {**base.params, "passes": passes})


def er_learn_seconds(stream, buffer, size, seed):
    """Learn seconds per experience of one ER run, and the buffer's final fill."""
    learner = make_learner("er", {"buffer": buffer, "buffer_size": size}, seed=seed)
    res = run(stream, learner, seed=seed, progress=False)
    return res.learn_seconds, len(learner.buffer)


def micro(buf_cls, capacity, num_classes, calls=300):
    """(µs per add of 32 into a full buffer, µs per sample(32)): medians over blocks of calls."""
    g = torch.Generator().manual_seed(0)
    buf = buf_cls(capacity)
    bs = 32
    fill_bs = 4096
    # fill to capacity (and past it, so the reservoir is in its replacement regime)
    offered = 0
    while offered < capacity + fill_bs:
        n = fill_bs
        buf.add(g, x=torch.rand(n, 1, 28, 28), y=torch.randint(num_classes, (n,)))
        offered += n
    xs = torch.rand(calls, bs, 1, 28, 28)
    ys = torch.randint(num_classes, (calls, bs))
    add_t, samp_t = [], []
    block = 20
    for s in range(0, calls, block):
        t0 = time.perf_counter()
        for i in range(s, s + block):
            buf.add(g, x=xs[i], y=ys[i])
        add_t.append((time.perf_counter() - t0) / block)
        t0 = time.perf_counter()
        for _ in range(block):
            buf.sample(bs, g)
        samp_t.append((time.perf_counter() - t0) / block)
    assert len(buf) == capacity
    return statistics.median(add_t) * 1e6, statistics.median(samp_t) * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-er", action="store_true", help="only the microbenchmarks")
    args = p.parse_args(argv)
    threads = configure_threads(args.threads)
    print(f"torch {torch.__version__}, intra-op threads {threads}")

    if not args.skip_er:
        stream = repeated_stream(3)
        epochs = make_learner("er").config.epochs
        offered = np.cumsum([len(e) * epochs for e in stream])
        print(f"stream: class-incremental mnist, 10 tasks x 3 passes = {len(stream)} experiences of "
              f"~{len(stream[0])} examples; ER defaults (3 epochs, batch 32, replay 32)")
        configs = [("reservoir", 200), ("reservoir", 2000), ("reservoir", 20000),
                   ("class-balanced", 200), ("class-balanced", 2000)]
        runs = {c: [] for c in configs}
        fills = {}
        t0 = time.perf_counter()
        for r in range(args.repeats):  # interleave the configurations, repeat r uses seed r
            for c in configs:
                secs, fills[c] = er_learn_seconds(stream, *c, seed=r)
                runs[c].append(secs)
        print(f"({time.perf_counter() - t0:.1f} s for {args.repeats} x {len(configs)} runs)")
        for (buffer, size) in configs:
            per_exp = np.median(np.array(runs[(buffer, size)]), axis=0)
            early, late = float(np.median(per_exp[1:5])), float(np.median(per_exp[-10:]))
            full_at = int(np.argmax(offered >= size))
            print(f"ER {buffer:14s} buffer {size:5d} (final fill {fills[(buffer, size)]}, full during experience "
                  f"{full_at}): learn s per experience, median of {args.repeats}:")
            print("    " + " ".join(f"{t:.3f}" for t in per_exp))
            print(f"    exp 0 {per_exp[0]:.3f} | median exps 1-4 {early:.3f} | median last 10 {late:.3f}"
                  f" | late/early {late / early:.3f}", flush=True)

    print("buffer microbenchmarks (batch 32 of 1x28x28, full buffer; µs per call, median of 15 blocks of 20)")
    print(f"{'buffer':16s} {'classes':>7s} {'capacity':>9s} {'add µs':>9s} {'sample µs':>10s}")
    for cls, classes in ((ReservoirBuffer, 10), (ClassBalancedBuffer, 10), (ClassBalancedBuffer, 100)):
        for cap in (200, 2000, 20000, 100000):
            a, s = micro(cls, cap, classes)
            print(f"{cls.__name__:16s} {classes:7d} {cap:9d} {a:9.1f} {s:10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
