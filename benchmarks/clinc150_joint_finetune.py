"""The real upper bound of continual learning on CLINC150: all-MiniLM-L6-v2 fine-tuned on all 150 intents at once.

Every weight of the encoder plus a 150-way linear head, trained jointly on the whole training split (no
stream), AdamW (encoder lr 5e-5, head lr 1e-3, weight decay 0.01), batch 32 in length-sorted buckets,
``--epochs`` epochs, the encoder's dropout on (standard fine-tuning); accuracy on the 4,500 test sentences.
Next to it, the frozen-feature joint bound (multinomial logistic regression on the cached sentence vectors).
Usage: ``python benchmarks/clinc150_joint_finetune.py [--data-root DIR] [--epochs 2] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    from lifelong.data import load_dataset
    from lifelong.encoders.text_backbone import TextBackbone, encode_tokens, length_batches
    from lifelong.evaluation.bounds import joint_logistic_regression
    from lifelong.scenarios import class_incremental

    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    data = load_dataset("clinc150", representation="tokens", data_root=a.data_root, progress=False)
    features = load_dataset("clinc150", data_root=a.data_root, progress=False)
    frozen = joint_logistic_regression(class_incremental(features, tasks=10, seed=-1), C=1.0, max_iter=500)
    model = TextBackbone("minilm", normalize=False).train()
    head = torch.nn.Linear(model.out_dim, data.num_classes)
    opt = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": 5e-5}, {"params": head.parameters(), "lr": 1e-3}], weight_decay=0.01
    )
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        for idx in length_batches(data.x_train, 32, 0, g):
            loss = torch.nn.functional.cross_entropy(head(model(data.x_train[idx])), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: last loss {float(loss):.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    model.eval()
    with torch.no_grad():
        acc = float((head(encode_tokens(model, data.x_test)).argmax(1) == data.y_test).float().mean())
    out = {
        "joint_finetuned_minilm": acc,
        "frozen_feature_joint_logistic_regression": frozen,
        "epochs": a.epochs,
        "seconds": time.perf_counter() - t0,
    }
    print(json.dumps(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
