"""Baselines: RanPAC and EASE next to SimpleCIL on CLINC150's frozen MiniLM features.

CLINC150 over the cached 384-d all-MiniLM-L6-v2 sentence features (the feature cache), 150 intents in 10
experiences of one domain (15 intents) each; seed ``s`` rotates the domain order by ``s``
(``clinc_order(data, "domains", s)``) and seeds the learner. 3 seeds, paired differences with a 95 %
t-interval (``paired``).

Arms: ``simplecil`` (cosine prototypes, no training); ``ranpac`` (M = 2000 random ReLU features, ridge
chosen per experience by the official 80/20 rule) and its ablation without the projection (ridge
regression on the 384-d features, the official ``M = 0``); ``ease`` (one AdaptFormer adapter per
experience on the feature vector, 20 epochs, lr picked on validation from one grid) and its ablation
``alpha = 0`` (each class scored in its own subspace only, no ensemble over subspaces). Tuning for EASE:
``pick_on_validation`` on a validation stream (20 % of the training utterances held out, stratified,
domain order of seed 3, outside the test seeds). RanPAC's own knob (lambda) is chosen inside each
experience by its rule; SimpleCIL has none.

Run: ``.venv/bin/python benchmarks/baselines_pretrained.py [--seeds 0,1,2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time

from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.papers.common import clinc_order, load_data, paired, pick_on_validation, validation_split
from lifelong.runtime import configure_threads
from lifelong.scenarios import class_incremental

TUNE_SEED = 3
EASE_LR_GRID = (0.01, 0.05, 0.2)
ARMS = {
    "simplecil": ("simplecil", {}),
    "ranpac": ("ranpac", {}),
    "ranpac (no projection, M=0)": ("ranpac", {"projection_dim": 0}),
    "ease": ("ease", {}),
    "ease (alpha=0)": ("ease", {"alpha": 0.0}),
}


def stream_of(data, seed: int):  # noqa: ANN001, ANN201
    """One domain per experience, domain order rotated by ``seed``."""
    return class_incremental(data, tasks=10, class_order=clinc_order(data, "domains", seed))


def final_acc(name: str, cfg: dict, stream, seed: int) -> tuple[float, float]:  # noqa: ANN001
    """(final average accuracy, learn seconds)."""
    r = run(stream, make_learner(name, cfg, seed=seed), seed=seed, progress=False)
    return float(r.accuracy_matrix[-1].mean()), float(sum(r.learn_seconds))


def main() -> None:
    """Tune EASE's lr on validation, run every arm on the test seeds, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    configure_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    data = load_data({"name": "clinc150"})
    # the validation split keeps the dataset's domains (coarse labels) for the domain order
    val = validation_split(data, 0.2, TUNE_SEED)
    val.coarse_labels = data.coarse_labels
    vstream = stream_of(val, TUNE_SEED)
    ease_lr, ease_scores = pick_on_validation(
        EASE_LR_GRID, lambda lr: final_acc("ease", {"lr": lr}, vstream, TUNE_SEED)[0]
    )
    print(f"ease lr picked on validation: {ease_lr} {ease_scores} ({time.perf_counter() - t0:.0f} s)", flush=True)
    acc, secs = {}, {}
    for label, (name, cfg) in ARMS.items():
        cfg = {**cfg, "lr": ease_lr} if name == "ease" else cfg
        rows = [final_acc(name, cfg, stream_of(data, s), s) for s in seeds]
        acc[label] = [a for a, _ in rows]
        secs[label] = [t for _, t in rows]
        print(f"{label:30s} {[round(a, 4) for a in acc[label]]}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    pairs = {
        f"{a} - {b}": paired(acc[a], acc[b])
        for a, b in [
            ("ranpac", "simplecil"),
            ("ranpac", "ranpac (no projection, M=0)"),
            ("ease", "simplecil"),
            ("ease", "ease (alpha=0)"),
        ]
    }
    print(f"\n### CLINC150 (MiniLM features), final average accuracy %, seeds {seeds}\n")
    print("| arm | seed accuracies | mean | learn s (mean) |")
    print("|---|---|---:|---:|")
    for label in acc:
        print(
            f"| {label} | {', '.join(f'{100 * a:.2f}' for a in acc[label])} | "
            f"{100 * sum(acc[label]) / len(seeds):.2f} | {sum(secs[label]) / len(seeds):.1f} |"
        )
    print("\n| paired difference | mean (pts) | 95 % CI | held (> 0) |")
    print("|---|---:|---|---|")
    for k, p in pairs.items():
        held = "yes" if p["held"] else "no"
        print(f"| {k} | {100 * p['mean']:+.2f} | [{100 * p['lo']:+.2f}, {100 * p['hi']:+.2f}] | {held} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s wall")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"ease_lr": ease_lr, "ease_val": ease_scores, "test": acc, "seconds": secs, "paired": pairs},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
