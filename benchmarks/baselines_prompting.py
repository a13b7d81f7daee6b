"""Prompting baselines (L2P, DualPrompt, CODA-Prompt) inside all-MiniLM-L6-v2 vs SimpleCIL and a linear head.

Small CPU scale of CLINC150: ``--domains`` domains (15 intents each) as experiences, at most
``--per-class`` sentences per intent and split, class order = the chosen domains rotated by the seed
(``lifelong.papers.common.clinc_pair``, ``order='domains'``), seeds ``--seeds``. Arms:

- ``simplecil``: cosine prototypes of the frozen MiniLM features (no training);
- ``finetune`` (linear head): sequential fine-tuning of one linear head over the same frozen features
  (``SEQFT_LINEAR`` of the SimpleCIL reproduction: lr 0.1, 5 epochs, batch 32, cross-entropy over seen classes);
- ``l2p``, ``dualprompt``, ``coda-prompt`` over token ids with their defaults (``--epochs`` overrides epochs).

No learning rate is tuned (each arm runs its paper's/library default). Each arm is paired per seed with
SimpleCIL and with the linear head (``lifelong.papers.common.paired``, 95 % t-interval). Results: one JSON line
per run to ``--log`` as they finish; the summary table printed at the end.

Run: ``LIFELONG_DATA=/work/shared/data .venv/bin/python benchmarks/baselines_prompting.py``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.papers.common import clinc_pair, paired
from lifelong.papers.simplecil import SEQFT_LINEAR
from lifelong.runtime import configure_threads

PROMPT_ARMS = ("l2p", "dualprompt", "coda-prompt")


def _final(stream, name: str, config: dict, seed: int) -> tuple[float, float, float]:
    """(final average accuracy, forgetting-free diagonal mean, learn seconds)."""
    t = time.perf_counter()
    result = run(stream, make_learner(name, config, seed=seed), seed=seed, progress=False)
    R = np.asarray(result.accuracy_matrix)
    return float(R[-1].mean()), float(np.diag(R).mean()), time.perf_counter() - t


def main() -> None:
    """Run every arm on every seed and print the paired comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=0, help="epochs of the prompt arms (0: their defaults)")
    parser.add_argument("--arms", default=",".join(PROMPT_ARMS))
    parser.add_argument("--log", default="")
    args = parser.parse_args()
    configure_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    data = {"domains": list(range(args.domains)), "max_per_class": args.per_class}
    arms = [a for a in args.arms.split(",") if a]
    rows: dict[str, list[float]] = {a: [] for a in ["simplecil", "finetune (linear head)", *arms]}
    diag: dict[str, list[float]] = {a: [] for a in rows}
    secs: dict[str, list[float]] = {a: [] for a in rows}
    for seed in seeds:
        features, tokens = clinc_pair(data, "domains", seed)
        todo = [
            ("simplecil", "simplecil", {}, features),
            ("finetune (linear head)", "finetune", SEQFT_LINEAR, features),
        ]
        extra = {"epochs": args.epochs} if args.epochs else {}
        todo += [(a, a, dict(extra), tokens) for a in arms]
        for row, name, config, stream in todo:
            acc, dg, s = _final(stream, name, config, seed)
            rows[row].append(acc)
            diag[row].append(dg)
            secs[row].append(s)
            line = {"seed": seed, "row": row, "final_accuracy": acc, "diagonal": dg, "seconds": s, "config": config}
            print(json.dumps(line), flush=True)
            if args.log:
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
    print(
        f"\nCLINC150 tokens/features: {args.domains} domains x 15 intents, <= {args.per_class} per intent; "
        f"seeds {seeds}"
    )
    print("| arm | final accuracy (mean over seeds) | per seed | acc. right after learning | learn s / run |")
    print("|---|---:|---|---:|---:|")
    for row, values in rows.items():
        per = ", ".join(f"{v * 100:.1f}" for v in values)
        print(
            f"| {row} | {np.mean(values) * 100:.1f} | {per} | {np.mean(diag[row]) * 100:.1f} | "
            f"{np.mean(secs[row]):.0f} |"
        )
    print("\n| comparison | mean diff (points) | 95 % interval | held (lower end > 0) |")
    print("|---|---:|---|---|")
    for arm in arms:
        for base in ("simplecil", "finetune (linear head)"):
            p = paired(rows[arm], rows[base])
            print(
                f"| {arm} - {base} | {p['mean'] * 100:+.1f} | [{p['lo'] * 100:+.1f}, {p['hi'] * 100:+.1f}] | "
                f"{p['held']} |"
            )


if __name__ == "__main__":
    main()
