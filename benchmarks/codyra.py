"""CoDyRA vs lora-seq with LoRA inside all-MiniLM-L6-v2 on a class-incremental CLINC150 stream (arXiv 2412.01004).

Issue 4's claim: on a class-incremental CLINC150 stream with the MiniLM encoder, ``codyra``
beats ``lora-seq`` on final average accuracy and forgetting, with effective rank at most
half the rank budget and zero extra inference parameters after merging.

Stream (the same as ``benchmarks/lora_minilm.py --part clinc``): CLINC150 domains 0-2
(banking, credit_cards, kitchen_and_dining; 15 intents each), 20 training sentences per
intent, all test sentences, 3 experiences of 15 classes, token ids cut at 32 tokens.
Shared training settings (lora-seq's benchmark settings): AdamW lr 1e-3, 3 epochs, batch 16,
adapters on every Linear of MiniLM, a linear head. Runs:

- ``lora-seq`` merge, rank 8, alpha 16, dropout 0.05 (the baseline of lora_minilm.py);
- ``lora-seq`` merge, rank 16 (the same rank budget as CoDyRA);
- ``codyra`` (paper defaults for its own parts: budget 16, scaling 1, gates N(0, 1),
  kappa 0.005 rescaled to the task length, dense first half, cosine lr, cross-entropy over
  the current task's classes as in the official code);
- ablations: ``codyra`` with ``loss_scope=seen`` (lora-seq's loss) and ``codyra`` with
  ``kappa=0`` (no sparsity: a gated rank-16 LoRA with the official loss);
- optional (``--runs codyra-k2,codyra-lr``): ``kappa=0.01`` (a sensitivity check, not the default)
  and codyra at its own default lr 5e-4 instead of the shared 1e-3.

Per run: accuracy matrix, final average accuracy, forgetting (mean over the first T-1
experiences of max_i<T R[i, j] - R[T-1, j]), wall and CPU seconds; for codyra the mean /
min / max effective rank per experience; for every run the inference parameter count after
the last merge against a fresh MiniLM (no pooler) + the head.

Command used for benchmarks/codyra_results.md::

    LIFELONG_THREADS=1 .venv/bin/python benchmarks/codyra.py --json /tmp/codyra.json
    LIFELONG_THREADS=1 .venv/bin/python benchmarks/codyra.py --runs lora8,codyra --seed 1 --json /tmp/codyra_s1.json
    LIFELONG_THREADS=1 .venv/bin/python benchmarks/codyra.py --runs lora8,codyra --seed 2 --json /tmp/codyra_s2.json
    LIFELONG_THREADS=1 .venv/bin/python benchmarks/codyra.py --runs codyra-k2 --json /tmp/codyra_k2.json
    LIFELONG_THREADS=1 .venv/bin/python benchmarks/codyra.py --runs codyra-lr --json /tmp/codyra_lr.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--domains", default="0,1,2")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--runs",
        default="lora8,lora16,codyra,codyra-seen,codyra-k0",
        help="comma-separated subset of lora8, lora16, lora8-current, lora16-current, codyra, codyra-seen, codyra-k0, "
        "codyra-k2, "
        "codyra-lr",
    )
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = ap.parse_args()

    import numpy as np
    import torch

    from lifelong.data import load_dataset
    from lifelong.data.tokens import text_token_dataset
    from lifelong.encoders.text_backbone import TextBackbone
    from lifelong.evaluation import run
    from lifelong.methods import make_learner
    from lifelong.scenarios import class_incremental

    torch.set_num_threads(args.threads)
    domains = [int(d) for d in args.domains.split(",")]
    data = load_dataset(
        "clinc150",
        data_root=str(DATA_ROOT) if (DATA_ROOT / "clinc150").exists() else None,
        domains=domains,
        max_per_class=args.per_class,
        progress=False,
    )
    tokens = text_token_dataset(data, "minilm", max_length=args.max_length)
    stream = class_incremental(tokens, tasks=len(domains), seed=-1)
    n_classes = stream[0].num_classes
    base = TextBackbone("minilm")
    base_params = sum(p.numel() for p in base.parameters()) + base.out_dim * n_classes + n_classes
    del base

    common = {"backbone": "minilm", "epochs": args.epochs, "lr": 1e-3, "batch_size": 16, "eval_batch": 128}
    lora = {**common, "alpha": 16.0, "dropout": 0.05, "mode": "merge"}
    specs = {
        "lora8": ("lora-seq r=8 (merge)", "lora-seq", {**lora, "rank": 8}),
        "lora16": ("lora-seq r=16 (merge)", "lora-seq", {**lora, "rank": 16}),
        "lora8-current": ("lora-seq r=8, current-task loss", "lora-seq", {**lora, "rank": 8, "loss_scope": "current"}),
        "lora16-current": (
            "lora-seq r=16, current-task loss",
            "lora-seq",
            {**lora, "rank": 16, "loss_scope": "current"},
        ),
        "codyra": ("codyra r=16 (paper defaults)", "codyra", {**common}),
        "codyra-seen": ("codyra, loss over all seen classes", "codyra", {**common, "loss_scope": "seen"}),
        "codyra-k0": ("codyra, kappa=0 (no sparsity)", "codyra", {**common, "kappa": 0.0}),
        "codyra-k2": ("codyra, kappa=0.01 (sensitivity)", "codyra", {**common, "kappa": 0.01}),
        "codyra-lr": ("codyra, its own default lr 5e-4", "codyra", {**common, "lr": 5e-4}),
    }
    out = {
        "argv": sys.argv,
        "domains": domains,
        "per_class": args.per_class,
        "epochs": args.epochs,
        "train_sizes": [len(e.train_idx) for e in stream],
        "test_sizes": [len(e.test_idx) for e in stream],
        "max_tokens": int(tokens.x_train.shape[1]),
        "classes": n_classes,
        "base_inference_params": base_params,
        "load_avg_start": os.getloadavg()[0],
        "runs": [],
    }
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}), flush=True)
    for key in args.runs.split(","):
        label, name, cfg = specs[key]
        learner = make_learner(name, cfg, seed=args.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        res = run(stream, learner, seed=args.seed, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        R = np.asarray(res.accuracy_matrix)
        params = sum(p.numel() for p in learner.model.parameters())
        row = {
            "run": label,
            "key": key,
            "method": name,
            "config": cfg,
            "R": R.round(4).tolist(),
            "final_avg_acc": float(R[-1].mean()),
            "forgetting": float(np.mean([R[:-1, j].max() - R[-1, j] for j in range(len(R) - 1)])),
            "inference_params": params,
            "extra_inference_params": params - base_params,
            "wall_s": wall,
            "cpu_s": cpu,
            "load_avg": os.getloadavg()[0],
        }
        if name == "codyra":
            row["effective_rank"] = learner.effective_rank_summary()
            row["rank_min_max"] = [(h["min"], h["max"]) for h in learner.rank_history]
            row["layers"] = len(learner.rank_history[-1]["per_layer"])
        out["runs"].append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
