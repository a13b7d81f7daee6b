"""Full-scale runs of ``dst`` (DST-CL, arXiv 2308.14831) and ``hypernet`` (HNET / DPHN, arXiv 2209.07712),
next to ``er`` and ``finetune`` on the same streams, with accuracy, wall time and samples/s.

    .venv/bin/python benchmarks/sparse_hypernet.py [--seeds 0,1,2] [--parts mnist,permuted,clinc]

Parts:

- ``mnist``: split MNIST, 5 tasks x 2 classes, task id at test. ``lifelong.papers.dst_cl.measure("full")``
  (the DST grid {uniform, ERK} x {random, unfired, gradient, momentum} x density {0.2, 0.05} and two dense
  fine-tunes) plus ``er`` with the same MLP / epochs / batch; the claim of arXiv 2308.14831.
- ``permuted``: permuted MNIST, 10 tasks, task id at test. ``lifelong.papers.dphn.measure("full")`` (MLP and
  LSTM hypernetworks, DPHN extras, two fine-tunes) plus ``er``; the claim of arXiv 2209.07712.
- ``mnist-small`` (not in the default parts): the DST-CL check with a 784-100 MLP and 10 epochs, to see how
  the gap to fine-tuning depends on the setting.
- ``regtasks`` (not in the default parts): permuted MNIST, the two hypernetworks regularising every earlier
  task per step (HNET) or 2 drawn at random (``reg_tasks=2``), for the cost of the regulariser.
- ``clinc``: CLINC150 intents as frozen all-MiniLM-L6-v2 features, one domain (15 intents) per task:
  task-incremental (task id at test) for every method, and class-incremental (no task id: DST and the
  hypernetwork infer the task, see their docstrings) for one seed.

Wall time is the learners' own training time (``Result.learn_seconds``, evaluation excluded);
samples/s = training examples of the stream processed per second (epochs x stream size / wall;
ER's replayed examples are not counted). The machine is a shared 2-core box: the 1-minute load
average is recorded with each part, and methods of one part are interleaved per seed so that
they see the same load. Writes ``benchmarks/sparse_hypernet_results.md`` (``--out``) and a JSON
file of every run beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def load() -> float:
    """1-minute load average."""
    return os.getloadavg()[0]


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{100 * v.mean():.2f} ± {100 * v.std():.2f}" if len(v) > 1 else f"{100 * v.mean():.2f}"


def run_one(stream, name: str, config: dict, seed: int) -> dict:
    """One run: final accuracy, forgetting, BWT, learn seconds, stream samples, samples seen, parameters."""
    from lifelong.evaluation import run
    from lifelong.methods import make_learner

    learner = make_learner(name, config, seed=seed)
    r = run(stream, learner, seed=seed, progress=False)
    m = r.metrics
    epochs = learner.config.epochs
    return {
        "acc": m["final_average_accuracy"],
        "forgetting": m["forgetting"],
        "bwt": m["backward_transfer"],
        "seconds": float(sum(r.learn_seconds)),
        "stream_samples": epochs * sum(len(e) for e in stream),
        "samples_seen": int(r.samples_seen[-1]),
        "params": [int(r.trainable_parameters), int(r.total_parameters)],
    }


def table(rows: dict[str, list[dict]], reference: str = "er", extra: str = "forgetting") -> list[str]:
    """Markdown table: accuracy, forgetting/BWT, wall, samples/s and cost relative to ``reference``."""
    if reference not in rows:
        reference = next(iter(rows))
    ref = np.mean([r["seconds"] for r in rows[reference]])
    out = [
        f"| method | final avg acc (%) | {extra} (points) | wall s (mean) | samples/s | × {reference} wall "
        "| params (trainable / total) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rs in rows.items():
        secs = np.mean([r["seconds"] for r in rs])
        sps = np.mean([r["stream_samples"] / r["seconds"] for r in rs])
        vals = [r[extra] for r in rs if r[extra] is not None]
        ex = mean_std(vals) if vals else "—"
        cost = f"{secs / ref:.2f}"
        p = rs[-1]["params"]
        out.append(
            f"| {label} | {mean_std([r['acc'] for r in rs])} | {ex} | {secs:.1f} | {sps:.0f} | {cost} | "
            f"{p[0]:,} / {p[1]:,} |"
        )
    return out


def claim_lines(claim) -> list[str]:
    out = [
        f"**{claim.paper}** ({claim.scale}): {'HELD' if claim.held else 'NOT HELD'}",
        "",
        f"- criterion: {claim.criterion}",
    ]
    out += [f"- {k}: {v}" for k, v in claim.measured.items()]
    return out + [""]


def part_mnist(seeds, data) -> tuple[list[str], dict]:
    import lifelong.papers.dst_cl as dst_cl
    from lifelong.scenarios import task_incremental

    spec = dict(dst_cl.SCALES["full"], seeds=tuple(seeds))
    dst_cl.SCALES["bench"] = spec
    t0, l0 = time.time(), load()
    runs = dst_cl.measure("bench", data)
    er_cfg = {"epochs": spec["epochs"], "hidden": spec["hidden"], "batch_size": 64}
    er = [run_one(task_incremental(data, tasks=5, seed=s), "er", er_cfg, s) for s in seeds]
    claim = dst_cl.summarize(runs, "bench")
    rows = {"er": er}
    for label, rs in runs.items():
        rows[label] = [
            {
                "acc": a,
                "bwt": b,
                "forgetting": None,
                "seconds": sec,
                "samples_seen": n,
                "stream_samples": spec["epochs"] * 4000,
                "params": list(p),
            }
            for a, b, sec, n, p in rs
        ]
    lines = [
        "### Split MNIST, task-incremental (arXiv 2308.14831, DST-CL)",
        "",
        f"5 tasks x 2 classes of the 5,000-image MNIST subset (4,000 train), task id at test; MLP "
        f"784-{'-'.join(map(str, spec['hidden']))}, {spec['epochs']} epochs/task, batch 64; DST and "
        "finetune[adam]: Adam 1e-3; finetune[sgd] and er: SGD lr 0.01 momentum 0.9 (er: reservoir buffer "
        f"200). Seeds {', '.join(map(str, seeds))} (class order and init). Load average {l0:.1f} at the "
        f"start, {load():.1f} at the end; {time.time() - t0:.0f} s in all.",
        "",
    ]
    lines += table(rows, extra="bwt") + [""] + claim_lines(claim)
    return lines, {k: v for k, v in rows.items()}


def part_mnist_small(seeds, data) -> tuple[list[str], dict]:
    """Sensitivity of arXiv 2308.14831's gap: a smaller MLP (784-100), 10 epochs, the two quick-scale variants."""
    import lifelong.papers.dst_cl as dst_cl

    spec = dict(dst_cl.SCALES["quick"], hidden=(100,), epochs=10, seeds=tuple(seeds))
    dst_cl.SCALES["bench-small"] = spec
    t0, l0 = time.time(), load()
    runs = dst_cl.measure("bench-small", data)
    claim = dst_cl.summarize(runs, "bench-small")
    rows = {
        label: [
            {
                "acc": a,
                "bwt": b,
                "forgetting": None,
                "seconds": sec,
                "samples_seen": n,
                "stream_samples": spec["epochs"] * 4000,
                "params": list(p),
            }
            for a, b, sec, n, p in rs
        ]
        for label, rs in runs.items()
    }
    lines = [
        "### Split MNIST with a smaller MLP (sensitivity of the DST-CL gap)",
        "",
        f"As the split-MNIST part but MLP 784-100 and {spec['epochs']} epochs/task, the two quick-scale "
        f"variants; seeds {', '.join(map(str, seeds))}. Load average {l0:.1f} at the start, {load():.1f} at "
        f"the end; {time.time() - t0:.0f} s in all.",
        "",
    ]
    return lines + table(rows, reference="finetune[adam]", extra="bwt") + [""] + claim_lines(claim), rows


def part_permuted(seeds, data) -> tuple[list[str], dict]:
    import lifelong.papers.dphn as dphn

    spec = dict(dphn.SCALES["full"], seeds=tuple(seeds))
    dphn.SCALES["bench"] = spec
    t0, l0 = time.time(), load()
    runs = dphn.measure("bench", data)
    er_cfg = {**dphn.COMMON, "epochs": spec["epochs"]}
    er = [run_one(dphn.stream(s, data), "er", er_cfg, s) for s in seeds]
    claim = dphn.summarize(runs, "bench")
    rows = {"er": er}
    for label, rs in runs.items():
        rows[label] = [
            {
                "acc": a,
                "forgetting": f,
                "seconds": sec,
                "samples_seen": n,
                "stream_samples": spec["epochs"] * 4000,
                "params": list(p),
            }
            for a, f, sec, n, p in rs
        ]
    lines = [
        "### Permuted MNIST, task id at test (arXiv 2209.07712, DPHN / HNET)",
        "",
        f"10 tasks (task 0 unpermuted), each a disjoint 400-image share of the 4,000 training images, "
        f"tested on all 1,000 test images permuted; target MLP 784-100-10, {spec['epochs']} epochs/task, "
        "batch 32; hypernetworks and finetune[adam]: Adam 1e-3; finetune[sgd] and er (buffer 200): SGD lr "
        f"0.01 momentum 0.9. Seeds {', '.join(map(str, seeds))}. Load average {l0:.1f} at the start, "
        f"{load():.1f} at the end; {time.time() - t0:.0f} s in all. Params of the hypernetworks: total "
        "stored after the last task (hypernetwork + every task's embedding / growth terms).",
        "",
    ]
    lines += table(rows) + [""] + claim_lines(claim)
    return lines, rows


CLINC_METHODS = {  # learning rates at which each method learns a new 15-intent task well (first 3 tasks, seed 0)
    "er": ("er", {"lr": 0.1}),
    "finetune[sgd]": ("finetune", {"lr": 0.1}),
    "finetune[adam]": ("finetune", {"optimizer": "adam", "lr": 0.01}),
    "dst": ("dst", {"update_every": 20, "lr": 0.01}),
    "hypernet[lstm]": ("hypernet", {"lr": 0.003}),
    "hypernet[mlp]": ("hypernet", {"hnet": "mlp", "lr": 0.003}),
}


def part_clinc(seeds) -> tuple[list[str], dict]:
    from lifelong.data import load_dataset
    from lifelong.papers.simplecil import clinc_data_root
    from lifelong.scenarios import class_incremental

    data = load_dataset("clinc150", data_root=clinc_data_root(), progress=False)
    common = {"hidden": (100,), "epochs": 5, "batch_size": 32}
    t0, l0 = time.time(), load()
    til: dict[str, list] = {}
    for s in seeds:
        stream = class_incremental(data, tasks=10, seed=-1, task_labels=True)
        for label, (name, cfg) in CLINC_METHODS.items():
            til.setdefault(label, []).append(run_one(stream, name, {**common, **cfg}, s))
    cil: dict[str, list] = {}
    stream = class_incremental(data, tasks=10, seed=-1)
    for label, (name, cfg) in CLINC_METHODS.items():
        cil.setdefault(label, []).append(run_one(stream, name, {**common, **cfg}, seeds[0]))
    lines = [
        "### CLINC150, frozen MiniLM features",
        "",
        "150 intents, one domain (15 intents, 1,500 training sentences) per task in CLINC's domain order, "
        "inputs = 384-d all-MiniLM-L6-v2 sentence vectors from the feature cache; MLP 384-100-150 (the "
        "hypernetworks generate it: 53,650 weights), 5 epochs/task, batch 32. Learning rates at which each "
        "method learns a new task well on the first 3 tasks (seed 0): er / finetune[sgd] SGD 0.1 momentum "
        "0.9 (er: buffer 200), finetune[adam] and dst Adam 0.01 (dst: density 0.2, prune-and-grow every "
        "20 batches), hypernetworks Adam 0.003 (beta 0.01, chunks of 1,000, embeddings of 32). "
        f"Load average {l0:.1f} at the start, {load():.1f} at the end; {time.time() - t0:.0f} s in all.",
        "",
        f"**Task-incremental** (task id at test), seeds {', '.join(map(str, seeds))} (learner init; the "
        "domain order is fixed):",
        "",
    ]
    lines += table(til) + [
        "",
        f"**Class-incremental** (no task id at training or test; seed {seeds[0]}). DST "
        "infers the task by the largest logit per sub-network, the hypernetworks by the lowest "
        "predictive entropy (HNET); finetune and er predict over all seen classes:",
        "",
    ]
    lines += table(cil) + [""]
    return lines, {"til": til, "cil": cil}


def part_regtasks(seeds, data) -> tuple[list[str], dict]:
    """Cost of the output regulariser: every earlier task per step (HNET) or 2 drawn at random."""
    import lifelong.papers.dphn as dphn

    epochs = dphn.SCALES["full"]["epochs"]
    t0, l0 = time.time(), load()
    rows: dict[str, list] = {}
    for s in seeds:
        stream = dphn.stream(s, data)
        rows.setdefault("er", []).append(run_one(stream, "er", {**dphn.COMMON, "epochs": epochs}, s))
        for label in ("hnet-mlp", "hnet-lstm"):
            name, cfg = dphn.METHODS[label]
            for k in (0, 2):
                tag = f"{label} (reg_tasks={k or 'all'})"
                rows.setdefault(tag, []).append(
                    run_one(stream, name, {**dphn.COMMON, **cfg, "epochs": epochs, "reg_tasks": k}, s)
                )
    lines = [
        "### Permuted MNIST: regularising every earlier task per step or 2 at random",
        "",
        f"As the permuted-MNIST part ({epochs} epochs/task), seeds {', '.join(map(str, seeds))}; "
        f"`reg_tasks=2` regularises 2 earlier tasks drawn at random per step instead of all of them. "
        f"Load average {l0:.1f} at the start, {load():.1f} at the end; {time.time() - t0:.0f} s in all.",
        "",
    ]
    return lines + table(rows) + [""], rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--parts", default="mnist,permuted,clinc")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "sparse_hypernet_results.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    parts = a.parts.split(",")
    from lifelong.data import load_dataset

    mnist = load_dataset("mnist") if {"mnist", "permuted", "regtasks", "mnist-small"} & set(parts) else None
    command = "LIFELONG_THREADS=1 .venv/bin/python benchmarks/sparse_hypernet.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    lines = [
        "# dst and hypernet next to er and finetune",
        "",
        f"Command: `{command.strip()}` (torch {torch.__version__}, 1 intra-op thread, shared 2-core machine).",
        "",
    ]
    record = {}
    for part in parts:
        fn = {
            "mnist": lambda: part_mnist(seeds, mnist),
            "permuted": lambda: part_permuted(seeds, mnist),
            "clinc": lambda: part_clinc(seeds),
            "regtasks": lambda: part_regtasks(seeds, mnist),
            "mnist-small": lambda: part_mnist_small(seeds, mnist),
        }[part]
        part_lines, rows = fn()
        lines += part_lines
        record[part] = rows
        print("\n".join(part_lines), flush=True)
        Path(a.out).write_text("\n".join(lines) + "\n")
        Path(a.out).with_suffix(".json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
