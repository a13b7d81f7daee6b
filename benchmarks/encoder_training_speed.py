"""Training speed of all-MiniLM-L6-v2 inside continual learners on 2 CPU cores: what each freezing choice costs.

One step = forward + backward + SGD on 32 CLINC150 training sentences (sorted-length batches) and a 150-way head,
for: every weight (SLCA / SeqFT, APER finetune), the top 2 layers on a cached frozen bottom (SLCA
``train_layers=2``), AdaptFormer, SSF, VPT-deep and LoRA (APER). Also inference: sentences per second, fp32 vs
bf16 autocast. Each figure is the median of ``--repeats`` timings, and every setting runs in this one process
back to back. Usage: ``python benchmarks/encoder_training_speed.py [--data-root DIR] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    from lifelong.adapters.encoder import EncoderAdapterConfig, add_encoder_adapter
    from lifelong.data import load_dataset
    from lifelong.encoders.text_backbone import TextBackbone, length_batches

    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = load_dataset("clinc150", representation="tokens", data_root=a.data_root, progress=False)
    x = data.x_train
    batches = length_batches(x, 32, 0, torch.Generator().manual_seed(0))[: a.steps]
    y = data.y_train
    out = {}

    def time_steps(model, head, params, forward):
        opt = torch.optim.SGD([*params, *head.parameters()], lr=1e-3, momentum=0.9)
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            for idx in batches:
                loss = torch.nn.functional.cross_entropy(head(forward(idx)), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            times.append((time.perf_counter() - t) / len(batches))
        return statistics.median(times)

    settings = ["finetune", "top2-cached", "adaptformer", "ssf", "vpt", "lora"]
    for name in settings:
        model = TextBackbone("minilm").train()
        head = torch.nn.Linear(model.out_dim, 150)
        if name == "finetune":
            params = list(model.parameters())
            forward = lambda idx, m=model: m(x[idx])  # noqa: E731
        elif name == "top2-cached":
            for p in model.parameters():
                p.requires_grad_(False)
            top = list(model.encoder.encoder.layer)[4:]
            params = [p for layer in top for p in layer.parameters()]
            for p in params:
                p.requires_grad_(True)
            cache = {i: model.bottom(x[idx], 4) for i, idx in enumerate(batches)}
            lookup = {id(idx): i for i, idx in enumerate(batches)}
            forward = lambda idx, m=model, c=cache, k=lookup: m.top(*c[k[id(idx)]], 4)  # noqa: E731
        else:
            params = add_encoder_adapter(model, EncoderAdapterConfig(kind=name))
            forward = lambda idx, m=model: m(x[idx])  # noqa: E731
        s = time_steps(model, head, params, forward)
        out[name] = {"seconds_per_step": s, "sentences_per_second": 32 / s}
        print(f"{name:12s} {s * 1000:8.1f} ms/step  {32 / s:7.1f} sentences/s", flush=True)
    model = TextBackbone("minilm").eval()
    sample = x[:2048]
    for precision in ("fp32", "bf16-autocast"):
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
                for idx in length_batches(sample, 256, 0):
                    model(sample[idx])
            times.append(time.perf_counter() - t)
        s = statistics.median(times)
        out[f"encode-{precision}"] = {"sentences_per_second": len(sample) / s}
        print(f"encode {precision:14s} {len(sample) / s:7.1f} sentences/s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
