"""Library overhead: ``lifelong``'s ``finetune`` against a bare hand-written PyTorch loop.

Both sides do the same work on the default stream (class-incremental MNIST subset,
5 tasks, class-order seed 0):

* the same model (``lifelong.encoders.MLP`` backbone + ``nn.Linear`` head, built
  under ``torch.manual_seed(0)`` in the same order),
* the same training (SGD lr 0.01, momentum 0.9, fresh optimizer per experience,
  3 epochs, batch 32, ``randperm`` shuffling from a ``torch.Generator`` seeded 0,
  cross-entropy over the logits with unseen classes masked to ``-inf``),
* the same evaluation (every test set once before training and after each
  experience, in batches of 2048, scores cut to the visible classes).

The two are interleaved in one process (order alternating A B / B A), each timed
``--repeats`` times; the script prints the medians, the spread, the wall-time
ratio library / bare, and checks that both reach the same accuracy matrix. It also
gives the process CPU time of each run (with one intra-op thread this is the work
done, much less sensitive than wall time to other processes sharing the cores).
``--profile`` adds a cProfile of one library run (top functions by own time).

Run: ``.venv/bin/python benchmarks/overhead.py [--repeats 11] [--threads 1] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data import load_dataset
from lifelong.encoders import MLP
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.runtime import configure_threads
from lifelong.scenarios import class_incremental

EVAL_BATCH = 2048


class Net(nn.Module):
    """MLP backbone + linear head (same parameter creation order as lifelong's Classifier)."""

    def __init__(self, input_shape, num_classes, hidden=(256, 256)):
        super().__init__()
        self.backbone = MLP(input_shape, hidden)
        self.head = nn.Linear(self.backbone.out_dim, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def bare_loop(stream, seed=0, epochs=3, batch_size=32, lr=0.01, momentum=0.9, hidden=(256, 256)):
    """A hand-written loop doing the same work as ``run(stream, make_learner("finetune"))``.

    Returns ``(accuracy matrix, learn seconds per experience)``.
    """
    torch.manual_seed(seed)
    random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Net(stream[0].input_shape, stream.num_classes, hidden)
    seen = torch.zeros(stream.num_classes, dtype=torch.bool)
    tests = [e.test_tensors() for e in stream]

    def evaluate():
        model.eval()
        v = int(torch.nonzero(seen).max()) + 1 if seen.any() else 0
        row = []
        with torch.inference_mode():
            for x, y in tests:
                correct = 0
                for s in range(0, len(y), EVAL_BATCH):
                    scores = model(x[s : s + EVAL_BATCH])[:, :v].masked_fill(~seen[:v], float("-inf"))
                    if v:
                        correct += int((scores.argmax(1) == y[s : s + EVAL_BATCH]).sum())
                row.append(correct / len(y))
        model.train()
        return row

    evaluate()  # run() also measures the accuracy before any training
    rows, learn_s = [], []
    for exp in stream:
        t0 = time.perf_counter()
        x, y = exp.train_tensors()
        seen[y.unique()] = True
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        n = len(y)
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                loss = F.cross_entropy(model(x[idx]).masked_fill(~seen, float("-inf")), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        learn_s.append(time.perf_counter() - t0)
        rows.append(evaluate())
    return np.array(rows), learn_s


def library_run(stream, seed=0):
    """``run(stream, make_learner("finetune", seed=0))``; returns (matrix, learn seconds)."""
    result = run(stream, make_learner("finetune", seed=seed), seed=seed, progress=False)
    return result.accuracy_matrix, list(result.learn_seconds)


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process, fn's result)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0, out


def spread(xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]  # noqa: E731
    return (
        f"median {statistics.median(xs):.3f}  min {xs[0]:.3f}  q25 {q(0.25):.3f}  q75 {q(0.75):.3f}  max {xs[-1]:.3f}"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: lifelong's)")
    p.add_argument("--profile", action="store_true", help="cProfile one library run")
    args = p.parse_args(argv)
    threads = configure_threads(args.threads)
    stream = class_incremental(load_dataset("mnist"), tasks=5, seed=0)
    print(
        f"torch {torch.__version__}, intra-op threads {threads}, stream: class-incremental mnist, "
        f"{len(stream)} experiences, {sum(len(e) for e in stream)} train examples"
    )

    # warm-up (allocator, lazy imports) and the equality check
    (m_lib, _), (m_bare, _) = library_run(stream), bare_loop(stream)
    diff = float(np.abs(m_lib - m_bare).max())
    print(
        f"accuracy matrices: max |library - bare| = {diff:.6f} "
        f"({'identical' if diff == 0 else 'DIFFERENT'}); final average accuracy "
        f"library {m_lib[-1].mean():.4f}, bare {m_bare[-1].mean():.4f}"
    )

    lib_t, bare_t, lib_learn, bare_learn, ratios = [], [], [], [], []
    lib_cpu, bare_cpu, cpu_ratios = [], [], []
    for r in range(args.repeats):
        order = [("lib", library_run), ("bare", bare_loop)]
        if r % 2:
            order.reverse()
        got = {}
        for name, fn in order:
            t, c, (_, learn) = timed(fn, stream)
            got[name] = (t, sum(learn), c)
        lib_t.append(got["lib"][0])
        bare_t.append(got["bare"][0])
        lib_learn.append(got["lib"][1])
        bare_learn.append(got["bare"][1])
        lib_cpu.append(got["lib"][2])
        bare_cpu.append(got["bare"][2])
        ratios.append(got["lib"][0] / got["bare"][0])
        cpu_ratios.append(got["lib"][2] / got["bare"][2])
        print(
            f"  repeat {r:2d}: library {got['lib'][0]:.3f} s  bare {got['bare'][0]:.3f} s  "
            f"ratio {ratios[-1]:.3f} | CPU s library {got['lib'][2]:.3f}  bare {got['bare'][2]:.3f}  "
            f"ratio {cpu_ratios[-1]:.3f}",
            flush=True,
        )
    print(f"library wall s : {spread(lib_t)}")
    print(f"bare    wall s : {spread(bare_t)}")
    print(f"library learn s: {spread(lib_learn)}")
    print(f"bare    learn s: {spread(bare_learn)}")
    print(f"library CPU s  : {spread(lib_cpu)}")
    print(f"bare    CPU s  : {spread(bare_cpu)}")
    print(f"per-repeat wall ratio library/bare: {spread(ratios)}")
    print(f"per-repeat CPU  ratio library/bare: {spread(cpu_ratios)}")
    print(f"ratio of medians (wall) : {statistics.median(lib_t) / statistics.median(bare_t):.3f}")
    print(f"ratio of medians (learn): {statistics.median(lib_learn) / statistics.median(bare_learn):.3f}")
    print(f"ratio of medians (CPU)  : {statistics.median(lib_cpu) / statistics.median(bare_cpu):.3f}")

    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        library_run(stream)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18)
        print(s.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
