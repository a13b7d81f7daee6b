"""ER cost as its replay buffer fills, and buffer insert/sample cost against capacity.

Part 1 — ER on a long stream: class-incremental MNIST subset with 10 tasks (one
class each), the stream passed over three times (30 experiences of ~400 examples,
default ER settings: 3 epochs, batch 32, replay batch 32). Every optimizer step
offers its 32 stream examples to the buffer (~1,200 offers per experience), so a
buffer of 200 is full during experience 0, one of 2,000 during experience 1 and one
of 20,000 (reservoir only, to show the filling regime for longer) during
experience 16. The learn seconds per experience should stay flat (each step always
replays 32 examples, whatever the buffer size). The learners (plus a finetune
control without replay) are trained side by side, each experience learned by
every learner in turn, so load from other processes hits all of them at the same
experience. Wall and process CPU seconds are both reported (with one intra-op
thread, CPU time is the work done and much less sensitive to other processes).
Reported: per-experience medians over ``--repeats`` runs, the ratio
(median of the last 10 experiences) / (median of experiences 1-4), and each
learner's time relative to ER with a 200-example reservoir (full from the start,
constant work per step).

Part 2 — microbenchmarks of ``ReservoirBuffer`` and ``ClassBalancedBuffer``:
CPU microseconds per ``add`` of a 32-example MNIST batch into a *full* buffer (offered
2 x capacity beforehand, so the reservoir's acceptance rate is ~1/2 at every
capacity), and per ``sample(32)``, for capacities 200 ... 100,000 (10 classes;
class-balanced also with 100 classes). The buffers take turns block by block.

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
from lifelong.memory.buffer import ClassBalancedBuffer, ReservoirBuffer
from lifelong.methods import make_learner
from lifelong.runtime import configure_threads
from lifelong.scenarios import Stream, class_incremental


def repeated_stream(passes: int = 3) -> Stream:
    """Class-incremental MNIST (10 tasks) with its experiences repeated ``passes`` times."""
    base = class_incremental(load_dataset("mnist"), tasks=10, seed=0)
    exps = [
        dataclasses.replace(e, index=p * len(base) + i) for p in range(passes) for i, e in enumerate(base.experiences)
    ]
    return Stream(base.scenario, exps, base.class_order, base.class_names, {**base.params, "passes": passes})


def interleaved_learn_seconds(stream, configs, seed):
    """Learn seconds per experience (wall, and CPU of this process) for learners trained side by side.

    At each experience every learner learns it in turn (rotating order), so load from
    other processes hits all configurations at the same experience alike.
    """
    learners = [make_learner(m, kw, seed=seed) for m, kw in configs]
    secs = np.zeros((len(configs), len(stream)))
    cpu = np.zeros((len(configs), len(stream)))
    for i, exp in enumerate(stream):
        k = i % len(configs)
        for j in list(range(k, len(configs))) + list(range(k)):
            t0, c0 = time.perf_counter(), time.process_time()
            learners[j].learn(exp)
            secs[j, i], cpu[j, i] = time.perf_counter() - t0, time.process_time() - c0
    return secs, cpu, learners


def filled_buffer(buf_cls, capacity, num_classes, g):
    """A buffer offered 2 x ``capacity`` random MNIST-shaped examples (so it is full and, for the
    reservoir, accepts about half of what it is offered next, whatever its capacity)."""
    buf = buf_cls(capacity)
    offered, chunk = 0, 4096
    while offered < 2 * capacity:
        n = min(chunk, 2 * capacity - offered)
        buf.add(g, x=torch.rand(n, 1, 28, 28), y=torch.randint(num_classes, (n,)))
        offered += n
    assert len(buf) == capacity
    return buf


def micro(specs, blocks=15, block=20, bs=32):
    """CPU µs per ``add`` of a 32-batch and per ``sample(32)``, median over blocks; the buffers take
    turns block by block so machine load affects them alike."""
    g = torch.Generator().manual_seed(0)
    bufs = [filled_buffer(cls, cap, classes, g) for cls, classes, cap in specs]
    add_t = [[] for _ in specs]
    samp_t = [[] for _ in specs]
    for _ in range(blocks):
        xs = torch.rand(block, bs, 1, 28, 28)
        for j, ((_, classes, _), buf) in enumerate(zip(specs, bufs)):
            ys = torch.randint(classes, (block, bs))
            t0 = time.process_time()
            for i in range(block):
                buf.add(g, x=xs[i], y=ys[i])
            add_t[j].append((time.process_time() - t0) / block)
            t0 = time.process_time()
            for _ in range(block):
                buf.sample(bs, g)
            samp_t[j].append((time.process_time() - t0) / block)
    return [
        (statistics.median(a) * 1e6, min(a) * 1e6, max(a) * 1e6, statistics.median(s) * 1e6, min(s) * 1e6, max(s) * 1e6)
        for a, s in zip(add_t, samp_t)
    ]


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
        print(
            f"stream: class-incremental mnist, 10 tasks x 3 passes = {len(stream)} experiences of "
            f"~{len(stream[0])} examples; ER defaults (3 epochs, batch 32, replay 32)"
        )
        configs = [
            ("finetune", {}),
            ("er", {"buffer": "reservoir", "buffer_size": 200}),
            ("er", {"buffer": "reservoir", "buffer_size": 2000}),
            ("er", {"buffer": "reservoir", "buffer_size": 20000}),
            ("er", {"buffer": "class-balanced", "buffer_size": 200}),
            ("er", {"buffer": "class-balanced", "buffer_size": 2000}),
        ]
        runs, cpus = [], []
        t0 = time.perf_counter()
        for r in range(args.repeats):
            secs, cpu, learners = interleaved_learn_seconds(stream, configs, seed=r)
            runs.append(secs)
            cpus.append(cpu)
        print(f"({time.perf_counter() - t0:.1f} s for {args.repeats} repeats of {len(configs)} learners side by side)")
        for label, data in (("wall", runs), ("CPU", cpus)):
            med = np.median(np.array(data), axis=0)  # (config, experience)
            ref = med[1]  # ER reservoir 200: full from experience 0, constant work per step
            print(f"-- {label} seconds --")
            for j, ((m, kw), learner) in enumerate(zip(configs, learners)):
                per_exp = med[j]
                name = "finetune (no replay)" if m == "finetune" else f"ER {kw['buffer']} {kw['buffer_size']}"
                size = kw.get("buffer_size")
                full = f", full during experience {int(np.argmax(offered >= size))}" if size else ""
                fill = f", final fill {len(learner.buffer)}" if size else ""
                early, late = float(np.median(per_exp[1:5])), float(np.median(per_exp[-10:]))
                rel = per_exp / ref
                print(f"{name}{fill}{full}: learn {label} s per experience (median of {args.repeats}):")
                print("    " + " ".join(f"{t:.3f}" for t in per_exp))
                print(
                    f"    exp 0 {per_exp[0]:.3f} | median exps 1-4 {early:.3f} | median last 10 {late:.3f} | "
                    f"late/early {late / early:.3f} | relative to ER reservoir 200: exps 1-4 "
                    f"{np.median(rel[1:5]):.3f}, last 10 {np.median(rel[-10:]):.3f}",
                    flush=True,
                )

    print(
        "buffer microbenchmarks: batch 32 of 1x28x28 into a full buffer that was offered 2 x capacity;"
        " CPU µs per call (process time), median [min-max] of 15 blocks of 20 calls"
    )
    print(f"{'buffer':20s} {'classes':>7s} {'capacity':>9s} {'add µs':>22s} {'sample(32) µs':>22s}")
    specs = [
        (cls, classes, cap)
        for cls, classes in ((ReservoirBuffer, 10), (ClassBalancedBuffer, 10), (ClassBalancedBuffer, 100))
        for cap in (200, 2000, 20000, 100000)
    ]
    for (cls, classes, cap), (a, a0, a1, s, s0, s1) in zip(specs, micro(specs)):
        print(
            f"{cls.__name__:20s} {classes:7d} {cap:9d} {a:8.1f} [{a0:6.1f}-{a1:6.1f}] {s:8.1f} [{s0:6.1f}-{s1:6.1f}]",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
