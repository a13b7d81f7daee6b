"""Encode CLINC150 with MiniLM: speed (fp32 vs bf16, 2 vs 1 threads), accuracy kept by bf16,
cached-start time, and the frozen-MiniLM reference numbers of the 10-domain stream.

    .venv/bin/python benchmarks/clinc150_encode.py [--data-root ../shared/data/clinc150]

Writes ``benchmarks/clinc150_encode_results.md`` (``--out``). Every number is measured
in this run; the machine's load average is recorded beside each timing because the
2-core development machine is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def ncm_accuracy(xtr, ytr, xte, yte, num_classes) -> float:
    """Joint nearest-class-mean accuracy (cosine on the unit-norm features) over all classes."""
    means = torch.zeros(num_classes, xtr.shape[1]).index_add_(0, ytr, xtr)
    means = torch.nn.functional.normalize(means, dim=1)
    return float(((xte @ means.T).argmax(1) == yte).float().mean())


def load() -> str:
    """The 1-minute load average, formatted."""
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "clinc150"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "clinc150_encode_results.md"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--subset", type=int, default=3000, help="sentences in the speed comparison")
    a = p.parse_args()

    from lifelong.data import load_dataset
    from lifelong.data.text import read_clinc150
    from lifelong.encoders.text import TextEncoder
    from lifelong.evaluation import run
    from lifelong.evaluation.metrics import final_average_accuracy
    from lifelong.methods import make_learner
    from lifelong.scenarios import class_incremental

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    files = read_clinc150(a.data_root, download=False)
    texts = files.splits["train"][0] + files.splits["test"][0]
    n = len(texts)
    cache = tempfile.mkdtemp(prefix="clinc150-cache-")

    # 1. cold start: load_clinc150 with an empty cache = model load + tokenise + encode fp32, 2 threads
    t0, c0 = time.perf_counter(), time.process_time()
    la = load()
    data = load_dataset("clinc150", data_root=a.data_root, cache_dir=cache, threads=2, batch_size=a.batch_size,
                        progress=False)
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    enc_fp32_2 = data.meta["feature_cache"]["encode_seconds"]
    # 2. cached start, in this process and in a fresh interpreter (imports included)
    t0 = time.perf_counter()
    again = load_dataset("clinc150", data_root=a.data_root, cache_dir=cache, threads=2, progress=False)
    warm = time.perf_counter() - t0
    assert again.meta["feature_cache"]["hit"] and torch.equal(again.x_train, data.x_train)
    code = ("import time; t=time.perf_counter(); from lifelong.data import load_dataset; "
            f"d=load_dataset('clinc150', data_root={a.data_root!r}, cache_dir={cache!r}); "
            "assert d.meta['feature_cache']['hit']; print(time.perf_counter()-t)")
    t0 = time.perf_counter()
    inner = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                 text=True).stdout.strip().splitlines()[-1])
    fresh = time.perf_counter() - t0

    # 3. full encodes in the bf16 variants (2 threads) for speed and accuracy, one model per precision
    models = {}
    for prec in ("fp32", "bf16-weights"):
        m = TextEncoder("minilm", precision=prec, batch_size=a.batch_size, progress=False)
        m._load()
        models[prec] = m
    models["bf16"] = models["fp32"]  # autocast runs on the fp32 weights

    def encoder(prec: str, threads: int) -> TextEncoder:
        e = TextEncoder("minilm", threads=threads, precision=prec, batch_size=a.batch_size, progress=False)
        src = models[prec]
        e._model, e._tokenizer, e._type_ids = src._model, src._tokenizer, src._type_ids
        return e

    feats = {"fp32": torch.cat([data.x_train, data.x_test])}
    full_t, full_load, full_cpu = {"fp32": enc_fp32_2}, {"fp32": la}, {"fp32": cold_cpu}
    for prec in ("bf16", "bf16-weights"):
        full_load[prec] = load()
        t0, c0 = time.perf_counter(), time.process_time()
        feats[prec] = encoder(prec, 2).encode(texts)
        full_t[prec], full_cpu[prec] = time.perf_counter() - t0, time.process_time() - c0
        print("full", prec, full_t[prec], flush=True)
    # 4. speed of every (precision, threads) on one fixed random subset, back to back
    sub = [texts[i] for i in np.random.default_rng(0).choice(n, size=min(a.subset, n), replace=False)]
    sub_t, sub_load, sub_cpu = {}, {}, {}
    for th in (2, 1):
        for prec in ("fp32", "bf16", "bf16-weights"):
            sub_load[(prec, th)] = load()
            t0, c0 = time.perf_counter(), time.process_time()
            encoder(prec, th).encode(sub)
            sub_t[(prec, th)], sub_cpu[(prec, th)] = time.perf_counter() - t0, time.process_time() - c0
            print("subset", prec, th, sub_t[(prec, th)], flush=True)

    ntr = len(files.splits["train"][0])
    ytr, yte = data.y_train, data.y_test
    accs, cos = {}, {}
    for k, x in feats.items():
        accs[k] = ncm_accuracy(x[:ntr], ytr, x[ntr:], yte, 150)
        cos[k] = float((x * feats["fp32"]).sum(1).min())

    # 5. reference numbers on the 10-domain class-incremental stream (frozen fp32 MiniLM)
    stream = class_incremental(data, tasks=10, seed=-1)
    assert all(len({data.coarse_labels[c] for c in e.classes}) == 1 for e in stream)
    ref = {}
    t0 = time.perf_counter()
    ref["ncm"] = final_average_accuracy(run(stream, make_learner("ncm"), seed=0, progress=False).accuracy_matrix)
    ref["ncm_s"] = time.perf_counter() - t0
    ft = make_learner("finetune", {"hidden": ()}, seed=0)
    t0 = time.perf_counter()
    res = run(stream, ft, seed=0, progress=False)
    ref["finetune"] = final_average_accuracy(res.accuracy_matrix)
    ref["finetune_s"] = time.perf_counter() - t0
    linear = [m for m in ft.model.modules() if isinstance(m, torch.nn.Linear)]
    ref["finetune_arch"] = f"{len(linear)} Linear layer(s): {[tuple(m.weight.shape) for m in linear]}"
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=2000).fit(data.x_train.numpy(), ytr.numpy())
    ref["joint_lr"] = float((lr.predict(data.x_test.numpy()) == yte.numpy()).mean())
    ref["joint_lr_s"] = time.perf_counter() - t0

    say("# CLINC150 encoding with all-MiniLM-L6-v2 (frozen), feature cache, reference numbers")
    say()
    say(f"Command: `.venv/bin/python benchmarks/clinc150_encode.py` (data: {a.data_root})  ")
    say(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, Python {platform.python_version()}; shared with other jobs: the 1-minute "
        "load average at the start of each timing is given (2 cores: a load of 2 means no idle core).  ")
    say(f"Sentences: CLINC150 train + test, {n:,} (max 33 tokens); batch size {a.batch_size}, "
        "batches sorted by token length.")
    say()
    say("## What bf16 keeps: full encode of all sentences, 2 threads")
    say()
    say("| precision | wall seconds | sentences/s (wall) | CPU seconds | load avg | min cosine to fp32 | "
        "NCM accuracy (150 classes) |")
    say("| --- | --- | --- | --- | --- | --- | --- |")
    for k in ("fp32", "bf16", "bf16-weights"):
        say(f"| {k} | {full_t[k]:.1f} | {n / full_t[k]:.0f} | {full_cpu[k]:.1f} | {full_load[k]} | {cos[k]:.4f} | "
            f"{100 * accs[k]:.2f}% |")
    say()
    say("NCM = joint nearest class mean (cosine) on the unit-norm features, all 150 intents, CLINC test split. "
        "`bf16` = `torch.autocast('cpu', dtype=torch.bfloat16)` over the fp32 model; `bf16-weights` = the "
        "model cast to bfloat16. The fp32 row is the cold `load_dataset` call: wall = its encode seconds "
        "(tokenisation included), CPU = the whole call (model load included). CPU seconds = process time "
        "over all threads: less sensitive than wall time to other jobs on the machine.")
    say()
    say(f"## Speed: the same {len(sub):,} random sentences, every setting back to back")
    say()
    say("| precision | threads | wall seconds | sentences/s (wall) | CPU seconds | sentences per CPU second | "
        "load avg |")
    say("| --- | --- | --- | --- | --- | --- | --- |")
    for k, t in sub_t.items():
        say(f"| {k[0]} | {k[1]} | {t:.1f} | {len(sub) / t:.0f} | {sub_cpu[k]:.1f} | {len(sub) / sub_cpu[k]:.0f} | "
            f"{sub_load[k]} |")
    say()
    say("## Feature cache")
    say()
    say("| start | seconds |")
    say("| --- | --- |")
    say(f"| cold: `load_dataset('clinc150')`, empty cache (model load + encode fp32, 2 threads) | {cold:.1f} "
        f"(CPU {cold_cpu:.1f}) |")
    say(f"| cached, same process | {warm:.2f} |")
    say(f"| cached, fresh interpreter: import + load (wall, incl. Python start) | {inner:.2f} ({fresh:.2f}) |")
    say()
    say(f"`meta['feature_cache']` on the cached load: hit={again.meta['feature_cache']['hit']}, "
        f"saved_seconds={again.meta['feature_cache']['saved_seconds']:.1f}.")
    say()
    say("## Reference numbers: 10 class-incremental experiences of one domain (15 intents) each")
    say()
    say("`class_incremental(load_dataset('clinc150'), tasks=10, seed=-1)`, learner seed 0, fp32 MiniLM features.")
    say()
    say("| method | final average accuracy | seconds |")
    say("| --- | --- | --- |")
    say(f"| `ncm` (prototype classifier, euclidean) | {100 * ref['ncm']:.2f}% | {ref['ncm_s']:.1f} |")
    say(f"| `finetune` with `hidden=()` ({ref['finetune_arch']}; SGD lr 0.01, 3 epochs) | "
        f"{100 * ref['finetune']:.2f}% | {ref['finetune_s']:.1f} |")
    say(f"| joint upper bound: sklearn `LogisticRegression(max_iter=2000)` on all 150 classes | "
        f"{100 * ref['joint_lr']:.2f}% (test accuracy) | {ref['joint_lr_s']:.1f} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    shutil.rmtree(cache, ignore_errors=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
