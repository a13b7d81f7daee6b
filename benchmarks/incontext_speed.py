"""Training speed of every in-context study's default small model (``lifelong incontext train STUDY``).

For each study of :data:`lifelong.incontext.studies.STUDIES` with its default settings (model, batch, prompt
length), the model is trained through :func:`lifelong.incontext.train.train` (the loop the CLI runs: fresh prompts
every step, forward, loss, backward, Adam step) with an ``on_step`` hook that records ``time.perf_counter()`` and
``time.process_time()`` after every step; no evaluation or checkpoint inside the timed steps. After ``--warmup``
steps, the next ``--windows`` windows of ``--window`` steps each give steps/s (wall and process CPU); the medians are
reported. One intra-op thread (``torch.set_num_threads(1)``); the machine is shared, so CPU steps/s is the steadier
figure (load averages are printed).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/incontext_speed.py [--window 20] [--windows 5] [--warmup 10]
[--only linear,boolean] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from lifelong.incontext.report import train_config
from lifelong.incontext.studies import STUDIES, build_study, resolve_settings
from lifelong.incontext.train import train


def measure(study: str, window: int, windows: int, warmup: int) -> dict:
    """Median steps/s (wall and CPU) over ``windows`` windows of ``window`` steps after ``warmup`` steps."""
    steps = warmup + window * windows
    s = resolve_settings(study, steps=steps)
    built = build_study(s)
    wall, cpu = [time.perf_counter()], [time.process_time()]

    def tick(model, step):
        wall.append(time.perf_counter())
        cpu.append(time.process_time())

    cfg = train_config(s)
    cfg.eval_every = 0  # no evaluation inside the timed steps
    train(built.model, built.sampler, cfg, on_step=tick, progress=False)
    rates_wall, rates_cpu = [], []
    for w in range(windows):
        a, b = warmup + w * window, warmup + (w + 1) * window
        rates_wall.append(window / (wall[b] - wall[a]))
        rates_cpu.append(window / max(cpu[b] - cpu[a], 1e-9))
    params = sum(p.numel() for p in built.model.parameters())
    return {
        "study": study,
        "model": f"{type(built.model).__name__} d_model={s['d_model']} layers={s['layers']} heads={s['heads']}",
        "params": params,
        "batch": s["batch"],
        "steps_per_s_wall": statistics.median(rates_wall),
        "steps_per_s_cpu": statistics.median(rates_cpu),
        "windows_wall": rates_wall,
    }


def main() -> None:
    """Measure every study (or ``--only``) and print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--only", default=None, help="comma-separated study names")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()}; torch {torch.__version__}, 1 thread")
    names = a.only.split(",") if a.only else list(STUDIES)
    rows = [measure(n, a.window, a.windows, a.warmup) for n in names]
    print(f"load average at end: {os.getloadavg()}")
    print("\n| study | model | params | batch | steps/s (wall) | steps/s (CPU) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['study']} | {r['model']} | {r['params']:,} | {r['batch']} | "
            f"{r['steps_per_s_wall']:.1f} | {r['steps_per_s_cpu']:.1f} |"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
