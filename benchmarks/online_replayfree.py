"""OnPro (online, replay) and PRD (offline, replay-free) next to ER and fine-tuning on the same streams.

    .venv/bin/python benchmarks/online_replayfree.py [--seeds 0,1,2,3,4] [--sections all]
        [--data-root ../shared/data/clinc150] [--out benchmarks/online_replayfree_results.md]

Sections (each on one stream, every method on the same seeds and class orders):

- ``mnist-online``: 5,000-image MNIST subset, online 5 x 2 classes, batch 10, one pass,
  reservoir buffer 100: finetune, er, er (replay batch 64), onpro without APF (no mixup),
  onpro with random mixup only (``mixup_base_rate=1``), onpro.
- ``digits-online``: the same on scikit-learn's 8x8 digits (a 5x shorter stream).
- ``clinc-online``: CLINC150 as frozen 384-d MiniLM features, online 10 x 15 intents,
  batch 10, buffer 500: finetune, er, er (replay 64), onpro.
- ``mnist-ci``: MNIST class-incremental 5 x 2 classes, 20 epochs: finetune, er (buffer
  100), prd without distillation, prd.
- ``clinc-ci``: CLINC150 class-incremental 10 x 15 intents, 5 epochs: the same four
  (PRD's prototype lr 0.1: at 0.01 the 15 prototypes of an experience barely move and
  PRD does not learn even the first experience, chosen on seed 100).

Online methods use Adam lr 1e-3 (chosen on seeds 100-101 for ER and OnPro alike); PRD
uses SGD lr 0.05, batch 32; fine-tuning and ER in the class-incremental sections use the
library defaults (SGD lr 0.01, momentum 0.9, batch 32). Every figure is measured in this
run: final average accuracy (mean ± std over seeds), learn wall seconds per run, stream
examples per learn-second, examples drawn per stream example (replay and mixed batches
included; onpro and prd see each in two augmented views), and wall time relative to ER
in the same section. The 1-minute load average is printed
beside each section because the development machine is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
ONLINE = {"optimizer": "adam", "lr": 1e-3}
PRD = {"lr": 0.05, "batch_size": 32}


def _cls(name):
    from lifelong.methods.er import ER
    from lifelong.methods.finetune import Finetune
    from lifelong.methods.onpro import OnPro
    from lifelong.methods.prd import PRD as PRDLearner

    return {"finetune": Finetune, "er": ER, "onpro": OnPro, "prd": PRDLearner}[name]


def sections(data_root: str):
    """name -> (loader, stream builder, {label: (method, config)})."""
    from lifelong.data import load_digits, load_mnist
    from lifelong.scenarios import class_incremental, online

    def clinc():
        from lifelong.data import load_dataset

        return load_dataset("clinc150", data_root=data_root, progress=False)

    def online_methods(buffer, ablation=True):
        m = {
            "finetune": ("finetune", dict(ONLINE)),
            "er": ("er", {**ONLINE, "buffer_size": buffer}),
            "er (replay 64)": ("er", {**ONLINE, "buffer_size": buffer, "replay_batch_size": 64}),
        }
        if ablation:
            m["onpro w/o APF"] = ("onpro", {**ONLINE, "buffer_size": buffer, "apf": False})
            m["onpro, random mixup only"] = ("onpro", {**ONLINE, "buffer_size": buffer, "mixup_base_rate": 1.0})
        m["onpro"] = ("onpro", {**ONLINE, "buffer_size": buffer})
        return m

    def ci_methods(epochs, buffer, **prd):
        return {
            "finetune": ("finetune", {"epochs": epochs}),
            "er": ("er", {"epochs": epochs, "buffer_size": buffer}),
            "prd w/o distillation": ("prd", {**PRD, **prd, "epochs": epochs, "distill_coef": 0.0}),
            "prd": ("prd", {**PRD, **prd, "epochs": epochs}),
        }

    return {
        "mnist-online": (load_mnist, lambda d, s: online(d, tasks=5, batch_size=10, seed=s), online_methods(100)),
        "digits-online": (load_digits, lambda d, s: online(d, tasks=5, batch_size=10, seed=s), online_methods(100)),
        "clinc-online": (
            clinc,
            lambda d, s: online(d, tasks=10, batch_size=10, seed=s),
            online_methods(500, ablation=False),
        ),
        "mnist-ci": (load_mnist, lambda d, s: class_incremental(d, tasks=5, seed=s), ci_methods(20, 100)),
        "clinc-ci": (clinc, lambda d, s: class_incremental(d, tasks=10, seed=s), ci_methods(5, 500, prototypes_lr=0.1)),
    }


def run_section(loader, make_stream, methods, seeds) -> dict:
    """Per method: lists over seeds of final accuracy, learn seconds, stream size, samples processed."""
    from lifelong.evaluation import run
    from lifelong.methods.config import build_config

    data = loader()
    out = {m: {"acc": [], "secs": [], "stream": [], "seen": [], "apf_rank": []} for m in methods}
    for seed in seeds:
        stream = make_stream(data, seed)
        n_stream = sum(len(e) for e in stream)
        for label, (name, cfg) in methods.items():
            cls = _cls(name)
            learner = cls(build_config(cls.config_class, cfg), seed=seed)
            r = run(stream, learner, seed=seed, progress=False)
            epochs = 1 if stream[0].online else cfg.get("epochs", 1)
            rec = out[label]
            rec["acc"].append(float(r.accuracy_matrix[-1].mean()))
            rec["secs"].append(float(sum(r.learn_seconds)))
            rec["stream"].append(n_stream * epochs)
            rec["seen"].append(int(r.samples_seen[-1]))
            if label == "onpro":
                from lifelong.papers.onpro import confusion_matrix, pair_confusion_rank

                xs, ys = zip(*(e.test_tensors() for e in stream))
                pred = learner.predict(torch.cat(xs)).argmax(1)
                pair = learner.top_apf_pair()
                conf = confusion_matrix(pred, torch.cat(ys), stream.num_classes)
                rec["apf_rank"].append(pair_confusion_rank(conf, pair) if pair else None)
            print(f"  {label:22s} seed {seed}: acc {rec['acc'][-1]:.4f}  {rec['secs'][-1]:.1f}s", flush=True)
    return out


def table(out: dict) -> list[str]:
    er = np.mean(out["er"]["secs"])
    lines = [
        "| method | final avg acc (mean ± std) | learn s / run | stream ex/s | examples drawn / stream ex | "
        "wall vs er |",
        "|---|---|---|---|---|---|",
    ]
    for label, rec in out.items():
        acc = np.array(rec["acc"]) * 100
        secs = np.mean(rec["secs"])
        rate = np.sum(rec["stream"]) / np.sum(rec["secs"])
        proc = np.sum(rec["seen"]) / np.sum(rec["stream"])
        lines.append(
            f"| {label} | {acc.mean():.1f} ± {acc.std():.1f} | {secs:.1f} | {rate:,.0f} | {proc:.1f} | "
            f"{secs / er:.1f}x |"
        )
    ranks = out.get("onpro", {}).get("apf_rank", [])
    if ranks:
        lines.append("")
        lines.append(
            f"OnPro: rank of APF's most-sampled pair (last experience) among all class pairs by final "
            f"confusion, per seed: {', '.join(str(r) for r in ranks)} "
            f"(in the top 3 for {sum(1 for r in ranks if r is not None and r <= 3)}/{len(ranks)} seeds)"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--clinc-seeds", default="0,1,2", help="seeds of the (slower) CLINC150 sections")
    p.add_argument("--sections", default="all", help="comma-separated section names or 'all'")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "clinc150"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "online_replayfree_results.md"))
    a = p.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    clinc_seeds = [int(s) for s in a.clinc_seeds.split(",")]
    all_sections = sections(a.data_root)
    names = list(all_sections) if a.sections == "all" else a.sections.split(",")
    cmd = "python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]])
    lines = [
        "# OnPro and PRD next to ER and fine-tuning",
        "",
        f"Command: `.venv/bin/{cmd}` (1 torch thread; seeds {seeds}, CLINC150 sections {clinc_seeds}).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), torch {torch.__version__}.",
        "",
    ]
    for name in names:
        loader, make_stream, methods = all_sections[name]
        print(f"[{name}]", flush=True)
        load_before = os.getloadavg()[0]
        t0 = time.time()
        try:
            out = run_section(loader, make_stream, methods, clinc_seeds if name.startswith("clinc") else seeds)
        except Exception as e:  # noqa: BLE001 - a missing dataset skips its section with the reason
            lines += [f"## {name}", "", f"Not run: {type(e).__name__}: {e}", ""]
            continue
        lines += [
            f"## {name}",
            "",
            f"Load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; section wall {time.time() - t0:.0f} s.",
            "",
            *table(out),
            "",
        ]
        Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
