"""Class-incremental learning on a frozen pre-trained encoder: CLINC150 with all-MiniLM-L6-v2.

The whole CLINC150 stream (150 intents, 10 experiences of one domain = 15 intents
each, 100 train / 30 test utterances per intent, class order = domain order,
learner seed 0) over the cached 384-d MiniLM sentence features:

- ``simplecil`` (arXiv 2303.07338): cosine prototypes of the frozen features, no training;
- ``ncm``: the library's nearest-class-mean (cosine and Euclidean);
- ``finetune``: sequential fine-tuning of one shared linear head (cross-entropy over
  the classes seen so far; lr 0.1, 5 epochs, batch 32);
- ``aper`` and ``slca`` train inside the encoder over token ids: their figures come from
  ``lifelong reproduce simplecil|slca --scale full`` (``benchmarks/README.md``);
- the joint upper bound: multinomial logistic regression on all training data at
  once (L-BFGS, C = 1, on RMS-normalised features).

Reported per row: final average accuracy (mean of the last row of R), average
incremental accuracy, forgetting, accuracy on each experience right after learning
it (mean of the diagonal), learn seconds (wall and process CPU, one intra-op thread),
and trainable parameters. Features come from the feature cache (the first run
encodes CLINC150 once, about two minutes on 2 cores).

Run: ``.venv/bin/python benchmarks/pretrained_cil.py [--threads 1] [--only simplecil,ncm]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.papers.simplecil import SEQFT_LINEAR, clinc_stream, gap_closed, joint_logistic_regression
from lifelong.runtime import configure_threads

ROWS = [
    ("simplecil", "simplecil", {}),
    ("ncm (cosine)", "ncm", {"metric": "cosine"}),
    ("ncm (euclidean)", "ncm", {"metric": "euclidean"}),
    ("finetune (linear head)", "finetune", SEQFT_LINEAR),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated method names to run (default: all)")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args()
    configure_threads(args.threads)
    t0 = time.perf_counter()
    stream = clinc_stream("full")
    print(
        f"CLINC150: {len(stream)} experiences, {stream.num_classes} classes, "
        f"{sum(len(e) for e in stream)} train examples; loaded in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    only = {m for m in args.only.split(",") if m}
    rows = []
    for label, name, config in ROWS:
        if only and name not in only:
            continue
        c0, w0 = time.process_time(), time.perf_counter()
        result = run(stream, make_learner(name, config, seed=args.seed), seed=args.seed, progress=False)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        R = np.asarray(result.accuracy_matrix)
        m = result.metrics
        rows.append(
            {
                "row": label,
                "method": name,
                "config": config,
                "final": float(R[-1].mean()),
                "avg_incremental": m["average_incremental_accuracy"],
                "forgetting": m["forgetting"],
                "just_learned": float(np.diag(R).mean()),
                "learn_wall_s": float(sum(result.learn_seconds)),
                "total_cpu_s": cpu,
                "total_wall_s": wall,
                "trainable": result.trainable_parameters,
            }
        )
        print(f"{label:32s} final {rows[-1]['final']:.4f}  ({wall:.1f} s wall, {cpu:.1f} s cpu)", flush=True)
    c0, w0 = time.process_time(), time.perf_counter()
    joint = joint_logistic_regression(stream)
    rows.append(
        {
            "row": "joint logistic regression (bound)",
            "method": "joint-lr",
            "config": {"C": 1.0},
            "final": joint,
            "avg_incremental": None,
            "forgetting": None,
            "just_learned": None,
            "learn_wall_s": time.perf_counter() - w0,
            "total_cpu_s": time.process_time() - c0,
            "total_wall_s": time.perf_counter() - w0,
            "trainable": 384 * 150 + 150,
        }
    )
    simple = next((r["final"] for r in rows if r["method"] == "simplecil"), None)

    def fmt(v, pct=True):
        return "—" if v is None else (f"{100 * v:.2f}" if pct else f"{v:.1f}")

    print(
        "\n| method | final avg acc % | avg incr acc % | forgetting (pts) | just learned % | learn s (wall) | "
        "CPU s (total) | trainable params | gap SimpleCIL→joint closed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gap = (
            "—"
            if simple is None or r["method"] == "joint-lr"
            else f"{100 * gap_closed(r['final'], simple, joint):+.0f} %"
        )
        print(
            f"| {r['row']} | {fmt(r['final'])} | {fmt(r['avg_incremental'])} | {fmt(r['forgetting'])} | "
            f"{fmt(r['just_learned'])} | {fmt(r['learn_wall_s'], False)} | {fmt(r['total_cpu_s'], False)} | "
            f"{r['trainable']:,} | {gap} |"
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f} s wall")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
