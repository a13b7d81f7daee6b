"""Encode CLINC150 with MiniLM: speed (fp32 vs bf16, 2 vs 1 threads), accuracy kept by bf16,
cached-start time, and the frozen-MiniLM reference numbers of the 10-domain stream.

    .venv/bin/python benchmarks/clinc150_encode.py [--data-root ../shared/data/clinc150]
    .venv/bin/python benchmarks/clinc150_encode.py --only reference   # just the reference numbers

Writes ``benchmarks/clinc150_encode_results.md`` (``--out``); ``--only speed|reference``
rewrites only that part of the file. Every number is measured in the run; the
machine's load average is recorded beside each timing because the 2-core development
machine is shared, and CPU (process) seconds are given beside wall seconds.
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
SPLIT_MARK = "## Reference numbers"


def ncm_accuracy(xtr, ytr, xte, yte, num_classes) -> float:
    """Joint nearest-class-mean accuracy (cosine on the unit-norm features) over all classes."""
    means = torch.zeros(num_classes, xtr.shape[1]).index_add_(0, ytr, xtr)
    means = torch.nn.functional.normalize(means, dim=1)
    return float(((xte @ means.T).argmax(1) == yte).float().mean())


def load() -> str:
    """The 1-minute load average, formatted."""
    return f"{os.getloadavg()[0]:.1f}"


def speed_and_cache(a) -> list[str]:
    """Cold and cached starts, full encodes per precision, and a threads x precision speed table."""
    from lifelong.data import load_dataset
    from lifelong.data.text import read_clinc150
    from lifelong.encoders.text import TextEncoder

    files = read_clinc150(a.data_root, download=False)
    texts = files.splits["train"][0] + files.splits["test"][0]
    n = len(texts)
    cache = tempfile.mkdtemp(prefix="clinc150-cache-")

    # 1. cold start: load_clinc150 with an empty cache = model load + tokenise + encode fp32, 2 threads
    t0, c0 = time.perf_counter(), time.process_time()
    la = load()
    data = load_dataset(
        "clinc150", data_root=a.data_root, cache_dir=cache, threads=2, batch_size=a.batch_size, progress=False
    )
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    enc_fp32_2 = data.meta["feature_cache"]["encode_seconds"]
    # 2. cached start, in this process and in a fresh interpreter (imports included)
    t0 = time.perf_counter()
    again = load_dataset("clinc150", data_root=a.data_root, cache_dir=cache, threads=2, progress=False)
    warm = time.perf_counter() - t0
    assert again.meta["feature_cache"]["hit"] and torch.equal(again.x_train, data.x_train)
    code = (
        "import time; t=time.perf_counter(); from lifelong.data import load_dataset; "
        f"d=load_dataset('clinc150', data_root={a.data_root!r}, cache_dir={cache!r}); "
        "assert d.meta['feature_cache']['hit']; print(time.perf_counter()-t)"
    )
    t0 = time.perf_counter()
    inner = float(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
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
    accs, cos = {}, {}
    for k, x in feats.items():
        accs[k] = ncm_accuracy(x[:ntr], data.y_train, x[ntr:], data.y_test, 150)
        cos[k] = float((x * feats["fp32"]).sum(1).min())
    shutil.rmtree(cache, ignore_errors=True)

    out = [
        "# CLINC150 encoding with all-MiniLM-L6-v2 (frozen), feature cache, reference numbers",
        "",
        f"Command: `.venv/bin/python benchmarks/clinc150_encode.py` (data: {a.data_root})  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, Python {platform.python_version()}; shared with other jobs: the 1-minute "
        "load average at the start of each timing is given (2 cores: a load of 2 means no idle core).  ",
        f"Sentences: CLINC150 train + test, {n:,} (max 33 tokens); batch size {a.batch_size}, "
        "batches sorted by token length.",
        "",
        "## What bf16 keeps: full encode of all sentences, 2 threads",
        "",
        "| precision | wall seconds | sentences/s (wall) | CPU seconds | load avg | min cosine to fp32 | "
        "NCM accuracy (150 classes) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k in ("fp32", "bf16", "bf16-weights"):
        out.append(
            f"| {k} | {full_t[k]:.1f} | {n / full_t[k]:.0f} | {full_cpu[k]:.1f} | {full_load[k]} | "
            f"{cos[k]:.4f} | {100 * accs[k]:.2f}% |"
        )
    out += [
        "",
        "NCM = joint nearest class mean (cosine) on the unit-norm features, all 150 intents, CLINC test "
        "split. `bf16` = `torch.autocast('cpu', dtype=torch.bfloat16)` over the fp32 model; `bf16-weights` = "
        "the model cast to bfloat16. The fp32 row is the cold `load_dataset` call: wall = its encode seconds "
        "(the lazy model load and tokenisation included), CPU = the whole call. CPU seconds = process time "
        "over all threads: less sensitive than wall time to other jobs on the machine.",
        "",
        f"## Speed: the same {len(sub):,} random sentences, every setting back to back",
        "",
        "| precision | threads | wall seconds | sentences/s (wall) | CPU seconds | sentences per CPU second | "
        "load avg |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, t in sub_t.items():
        out.append(
            f"| {k[0]} | {k[1]} | {t:.1f} | {len(sub) / t:.0f} | {sub_cpu[k]:.1f} | "
            f"{len(sub) / sub_cpu[k]:.0f} | {sub_load[k]} |"
        )
    out += [
        "",
        "## Feature cache",
        "",
        "| start | seconds |",
        "| --- | --- |",
        f"| cold: `load_dataset('clinc150')`, empty cache (model load + encode fp32, 2 threads) | {cold:.1f} "
        f"(CPU {cold_cpu:.1f}) |",
        f"| cached, same process | {warm:.2f} |",
        f"| cached, fresh interpreter: import + load (wall, incl. Python start) | {inner:.2f} ({fresh:.2f}) |",
        "",
        f"`meta['feature_cache']` on the cached load: hit={again.meta['feature_cache']['hit']}, "
        f"saved_seconds={again.meta['feature_cache']['saved_seconds']:.1f}.",
        "",
    ]
    return out


def reference(a) -> list[str]:
    """NCM, linear fine-tuning and a joint logistic-regression bound on the 10-domain stream."""
    from sklearn.linear_model import LogisticRegression

    from lifelong.data import load_dataset
    from lifelong.evaluation import run
    from lifelong.evaluation.metrics import final_average_accuracy
    from lifelong.methods import make_learner
    from lifelong.scenarios import class_incremental

    data = load_dataset("clinc150", data_root=a.data_root, progress=False)  # the default feature cache
    val = load_dataset("clinc150", data_root=a.data_root, eval_split="val", progress=False)
    stream = class_incremental(data, tasks=10, seed=-1)
    assert all(len({data.coarse_labels[c] for c in e.classes}) == 1 for e in stream)
    rows = []
    t0 = time.perf_counter()
    acc = final_average_accuracy(run(stream, make_learner("ncm"), seed=0, progress=False).accuracy_matrix)
    rows.append(("`ncm` (prototype classifier, euclidean)", acc, time.perf_counter() - t0))
    ft = make_learner("finetune", {"hidden": ()}, seed=0)
    t0 = time.perf_counter()
    acc = final_average_accuracy(run(stream, ft, seed=0, progress=False).accuracy_matrix)
    linear = [tuple(m.weight.shape) for m in ft.model.modules() if isinstance(m, torch.nn.Linear)]
    rows.append(
        (
            f"`finetune` with `hidden=()`: {len(linear)} Linear layer {linear} on the features, SGD lr 0.01 "
            "momentum 0.9, 3 epochs, batch 32 (defaults)",
            acc,
            time.perf_counter() - t0,
        )
    )
    xtr, ytr = data.x_train.numpy(), data.y_train.numpy()
    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    acc = float((lr.predict(data.x_test.numpy()) == data.y_test.numpy()).mean())
    rows.append(
        (
            "joint bound: sklearn `LogisticRegression(C=1, max_iter=2000)`, all 150 classes at once",
            acc,
            time.perf_counter() - t0,
        )
    )
    t0 = time.perf_counter()
    val_acc = {}
    for C in (1.0, 10.0, 100.0):
        m = LogisticRegression(C=C, max_iter=2000).fit(xtr, ytr)
        val_acc[C] = (float((m.predict(val.x_test.numpy()) == val.y_test.numpy()).mean()), m)
    best = max(val_acc, key=lambda c: val_acc[c][0])
    acc = float((val_acc[best][1].predict(data.x_test.numpy()) == data.y_test.numpy()).mean())
    rows.append(
        (
            "joint bound, C chosen on CLINC's val split from {1, 10, 100} (val acc "
            + ", ".join(f"{c:g}: {100 * v[0]:.1f}%" for c, v in val_acc.items())
            + f") -> C={best:g}",
            acc,
            time.perf_counter() - t0,
        )
    )
    out = [
        f"{SPLIT_MARK}: 10 class-incremental experiences of one domain (15 intents) each",
        "",
        "`class_incremental(load_dataset('clinc150'), tasks=10, seed=-1)`, learner seed 0, fp32 MiniLM "
        f"features (command: `.venv/bin/python benchmarks/clinc150_encode.py --only reference`, load avg "
        f"{load()} at the end). The joint bounds are test accuracy over all 150 intents (equal to the "
        "final average accuracy: every domain has 450 test utterances).",
        "",
        "| method | final average accuracy | seconds |",
        "| --- | --- | --- |",
    ]
    out += [f"| {name} | {100 * acc:.2f}% | {s:.1f} |" for name, acc, s in rows]
    return out + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "clinc150"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "clinc150_encode_results.md"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--subset", type=int, default=3000, help="sentences in the speed comparison")
    p.add_argument(
        "--only", choices=["speed", "reference"], default=None, help="run one part and rewrite only that part of --out"
    )
    a = p.parse_args()
    out = Path(a.out)
    old = out.read_text() if out.is_file() else ""
    head, _, tail = old.partition(SPLIT_MARK)
    tail = SPLIT_MARK + tail if tail else ""
    first = "\n".join(speed_and_cache(a)) + "\n" if a.only != "reference" else head
    second = "\n".join(reference(a)) + "\n" if a.only != "speed" else tail
    out.write_text(first + second)
    print(first + second)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
