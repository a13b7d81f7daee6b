"""LoRA on all-MiniLM-L6-v2 on CPU: training speed and memory, injection/merge cost, lora-seq on CLINC150.

Parts (``--part``, comma-separated; default all):

- ``speed``: one training step = forward + backward + AdamW on a batch of real CLINC150
  sentences through MiniLM + a 150-way head. Full fine-tuning vs LoRA rank 8 (on every
  Linear layer, and on query/value only). Each setting runs in its own subprocess so
  that its peak resident memory (``ru_maxrss``) is its own; steps/s in wall and in CPU
  time (the machine is shared, see benchmarks/README.md).
- ``inject``: seconds to inject rank-8 adapters into every Linear of MiniLM, to merge
  and to unmerge them (exact), and merge time against parameter count on wide MLPs
  (merge is one matrix product per layer: time ~ parameters).
- ``clinc``: ``lora-seq`` with the MiniLM backbone (LoRA inside the transformer) on a
  small CLINC150 class-incremental stream, merge vs keep vs ALLoRA, next to frozen
  feature baselines (SimpleCIL, a sequentially fine-tuned linear head) on the same
  stream.

Command used for benchmarks/lora_minilm_results.md::

    .venv/bin/python benchmarks/lora_minilm.py --part speed,inject,clinc --json /tmp/lora_minilm.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _clinc_sentences(n: int) -> tuple[list[str], list[int]]:
    from lifelong.data.text import read_clinc150

    files = read_clinc150(str(DATA_ROOT) if (DATA_ROOT / "clinc150").exists() else None)
    texts, intents = files.splits["train"]
    names = sorted(set(intents))
    import numpy as np

    pick = np.random.default_rng(0).permutation(len(texts))[:n]  # mixed intents and lengths
    return [texts[i] for i in pick], [names.index(intents[i]) for i in pick]


# ---- speed worker (one setting per process) ---------------------------------------------------------
def worker(mode: str, steps: int, batch: int, threads: int, max_length: int) -> dict:
    import torch
    import torch.nn.functional as F

    from lifelong.adapters import LoRAConfig, count_parameters, inject_adapter
    from lifelong.encoders.text_backbone import TextBackbone

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from transformers import AutoTokenizer

    from lifelong.encoders.text import minilm_path

    texts, labels = _clinc_sentences(batch * (steps + 3))
    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    enc = tok(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="pt")
    ids, y = enc["input_ids"].float(), torch.tensor(labels)
    backbone = TextBackbone("minilm")
    head = torch.nn.Linear(backbone.out_dim, 150)
    if mode == "full":
        params = [*backbone.parameters(), *head.parameters()]
        lr = 5e-5
    else:
        targets = "all-linear" if mode == "lora8-all" else ["query", "value"]
        inject_adapter(backbone, LoRAConfig(r=8, alpha=16, dropout=0.05, target_modules=targets), seed=0)
        params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
        lr = 1e-3
    counts = count_parameters(torch.nn.Sequential(backbone, head))
    opt = torch.optim.AdamW(params, lr=lr)
    backbone.train()
    rss_model = _current_rss_mb()

    def step(i):
        sl = slice(i * batch, (i + 1) * batch)
        loss = F.cross_entropy(head(backbone(ids[sl])), y[sl])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(3):  # warm-up (allocator, optimizer state)
        step(i)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(3, 3 + steps):
        step(i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "mode": mode,
        "steps": steps,
        "batch": batch,
        "threads": threads,
        "tokens_per_batch": int(ids.shape[1]),
        "steps_per_s_wall": steps / wall,
        "steps_per_cpu_s": steps / cpu,
        "wall_s": wall,
        "cpu_s": cpu,
        "trainable_params": counts.trainable,
        "total_params": counts.total,
        "rss_after_model_mb": rss_model,
        "peak_rss_mb": _rss_mb(),
        "load_avg": os.getloadavg()[0],
    }


def part_speed(args) -> list[dict]:
    rows = []
    for mode in ("full", "lora8-all", "lora8-qv"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
            "--max-length",
            str(args.max_length),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ---- injection and merge cost ---------------------------------------------------------------------
def part_inject(args) -> dict:
    import torch
    from torch import nn

    from lifelong.adapters import LoRAConfig, inject_adapter, lora_layers, merge_adapters, unmerge_adapters
    from lifelong.encoders.text_backbone import TextBackbone

    torch.set_num_threads(args.threads)

    def best(fn, repeats=5):
        times = []
        for _ in range(repeats):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return min(times)

    out = {}
    cfg = LoRAConfig(r=8, alpha=16, target_modules="all-linear", init="random")
    models = [TextBackbone("minilm") for _ in range(5)]
    times = []
    for m in models:
        t = time.process_time()
        inject_adapter(m, cfg, seed=0)
        times.append(time.process_time() - t)
    m = models[0]
    n_linear = sum(p.numel() for layer in lora_layers(m).values() for p in layer.base_layer.parameters())
    original = {k: v.clone() for k, v in m.state_dict().items()}
    out["minilm"] = {
        "linear_layers": len(lora_layers(m)),
        "linear_params": n_linear,
        "inject_cpu_s": min(times),
        "merge_cpu_s": best(lambda: (merge_adapters(m), unmerge_adapters(m))) / 2,
    }

    def merge_only():
        merge_adapters(m)
        t = time.process_time()
        unmerge_adapters(m)
        return time.process_time() - t

    out["minilm"]["unmerge_cpu_s"] = min(merge_only() for _ in range(5))
    out["minilm"]["unmerge_restores_bit_exact"] = all(torch.equal(original[k], v) for k, v in m.state_dict().items())
    sweep = []
    for width in (256, 512, 1024, 2048, 4096):
        mlp = nn.Sequential(*[nn.Linear(width, width) for _ in range(4)])
        inject_adapter(mlp, cfg, seed=0)
        params = 4 * width * width
        t_merge = best(lambda mlp=mlp: (merge_adapters(mlp), unmerge_adapters(mlp))) / 2
        sweep.append(
            {"width": width, "params": params, "merge_unmerge_cpu_s": t_merge, "ns_per_param": 1e9 * t_merge / params}
        )
        print(json.dumps(sweep[-1]), flush=True)
    out["mlp_sweep"] = sweep
    print(json.dumps(out["minilm"]), flush=True)
    return out


# ---- lora-seq on CLINC150 ------------------------------------------------------------------------------
def part_clinc(args) -> dict:
    import numpy as np
    import torch

    from lifelong.data import load_dataset
    from lifelong.data.tokens import text_token_dataset
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
    tasks = len(domains)
    features_stream = class_incremental(data, tasks=tasks, seed=-1)
    token_stream = class_incremental(tokens, tasks=tasks, seed=-1)
    common = {
        "backbone": "minilm",
        "rank": 8,
        "alpha": 16.0,
        "dropout": 0.05,
        "epochs": args.epochs,
        "lr": 1e-3,
        "batch_size": 16,
        "eval_batch": 128,
    }
    runs = [
        ("lora-seq merge", "lora-seq", {**common, "mode": "merge"}, token_stream),
        ("lora-seq keep", "lora-seq", {**common, "mode": "keep"}, token_stream),
        ("lora-seq allora (merge)", "lora-seq", {**common, "variant": "allora"}, token_stream),
        ("simplecil (frozen features)", "simplecil", {}, features_stream),
        (
            "linear head SeqFT (frozen features)",
            "finetune",
            {"hidden": (), "epochs": args.epochs, "lr": 1e-3, "optimizer": "adamw", "batch_size": 16},
            features_stream,
        ),
    ]
    out = {
        "domains": domains,
        "per_class": args.per_class,
        "train_sizes": [len(e.train_idx) for e in token_stream],
        "test_sizes": [len(e.test_idx) for e in token_stream],
        "max_tokens": int(tokens.x_train.shape[1]),
        "runs": [],
    }
    for label, name, cfg, stream in runs:
        t0, c0 = time.perf_counter(), time.process_time()
        res = run(stream, make_learner(name, cfg, seed=0), seed=0, progress=False)
        R = np.asarray(res.accuracy_matrix)
        row = {
            "run": label,
            "method": name,
            "config": cfg,
            "R": R.round(4).tolist(),
            "final_avg_acc": float(R[-1].mean()),
            "forgetting": float(np.mean([R[:-1, j].max() - R[-1, j] for j in range(len(R) - 1)]))
            if len(R) > 1
            else 0.0,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "load_avg": os.getloadavg()[0],
        }
        out["runs"].append(row)
        print(json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="speed,inject,clinc")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--domains", default="0,1,2")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch, args.threads, args.max_length)))
        return
    results = {"argv": sys.argv, "load_avg_start": os.getloadavg()[0]}
    for part in args.part.split(","):
        results[part] = {"speed": part_speed, "inject": part_inject, "clinc": part_clinc}[part](args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
