"""Seed paper 37: *ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws* (Huang & Balestriero,
arXiv:2410.09692, 2024). Implemented by :mod:`lifelong.adapters.allora` (on the LoRA layer of
:mod:`lifelong.adapters.lora`); ``lora-seq`` runs it with ``variant="allora"``.

The paper's claim: in short fine-tuning runs (little data, few steps) ALLoRA - LoRA
without dropout and without the ``alpha / r`` factor, whose gradients are scaled per
row by a coefficient inversely proportional to the parameters' norm - reaches better
accuracy than LoRA. The abstract adds that ALLoRA escapes ``B = 0`` faster.

:func:`reproduce` (the catalogue's CPU protocol, fixed before any run): an MLP
64-256-256 pre-trained on scikit-learn digits 0-4 (Adam lr 1e-3, batch 64, 10 epochs,
per seed) is frozen; rank-8 adapters on both hidden layers plus a new linear head are
trained on digits 5-9 with 50 labelled examples per class for a short budget of 60
steps (AdamW lr 1e-3, batch 32, no weight decay), and scored on all test digits 5-9.
Arms: LoRA (alpha 16, dropout 0.1), LoRA without dropout (alpha 16), ALLoRA (eta 1,
p = 2). ``quick``: 3 seeds; ``full``: 10 seeds, plus the same comparison at 20 and 200
steps and with SGD (lr 0.01, momentum 0.9) instead of AdamW. Also measured: the mean
``||B||_F`` over the adapted layers after 10 steps.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.papers.base import Claim, Paper

SOURCE = (0, 1, 2, 3, 4)
TARGET = (5, 6, 7, 8, 9)
PER_CLASS = 50
STEPS = 60
TARGETS = ["net.1", "net.3"]
ARMS = {
    "lora": {"kind": "lora", "alpha": 16.0, "dropout": 0.1},
    "lora_no_dropout": {"kind": "lora", "alpha": 16.0, "dropout": 0.0},
    "allora": {"kind": "allora", "eta": 1.0, "norm_power": 2.0},
}


def _digits():
    from lifelong.data import load_digits

    d = load_digits()
    return d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test


def _subset(x, y, classes):
    keep = torch.isin(y, torch.tensor(classes))
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], remap[y[keep]]


def pretrain(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 10) -> tuple[nn.Module, nn.Module]:
    """The frozen source backbone (and its head): MLP 64-256-256 trained on the source classes.

    The same pre-training as CorDA's (:func:`lifelong.papers.corda.pretrain`: Adam lr 1e-3, batch 64).
    """
    from lifelong.papers.corda import pretrain as corda_pretrain

    return corda_pretrain(x, y, seed, epochs=epochs, hidden=(256, 256))


def _config(arm: str):
    from lifelong.adapters import ALLoRAConfig, LoRAConfig

    spec = dict(ARMS[arm])
    kind = spec.pop("kind")
    if kind == "allora":
        return ALLoRAConfig(r=8, target_modules=TARGETS, **spec)
    return LoRAConfig(r=8, target_modules=TARGETS, **spec)


def adapt(backbone: nn.Module, arm: str, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
          y_test: torch.Tensor, steps: int, seed: int, optimizer: str = "adamw",
          record_b_at: int = 10) -> dict:
    """Train adapter ``arm`` and a new head for ``steps`` steps; test accuracy and ``||B||`` at step ``record_b_at``."""
    from lifelong.adapters import adapter_parameters, inject_adapter, lora_layers
    from lifelong.data import cycle_batches

    model = copy.deepcopy(backbone)
    g = torch.Generator().manual_seed(1000 + seed)
    inject_adapter(model, _config(arm), "a", generator=g)
    model.train()
    torch.manual_seed(2000 + seed)
    head = nn.Linear(256, int(y.max()) + 1)
    params = [*adapter_parameters(model, "a"), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0) if optimizer == "adamw" else \
        torch.optim.SGD(params, lr=0.01, momentum=0.9)
    b_norm = float("nan")
    for step, idx in enumerate(cycle_batches(len(y), 32, steps, g)):
        loss = F.cross_entropy(head(model(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 == record_b_at:
            b_norm = float(np.mean([float(m.lora_B["a"].weight.detach().norm()) for m in lora_layers(model).values()]))
    model.eval()
    with torch.no_grad():
        acc = float((head(model(x_test)).argmax(1) == y_test).float().mean())
    return {"acc": acc, "b_norm": b_norm}


def compare(seeds: list[int], steps: int = STEPS, optimizer: str = "adamw") -> dict:
    """Target test accuracy of every arm for each seed (one pre-trained backbone per seed)."""
    x_tr, y_tr, x_te, y_te = _digits()
    xs, ys = _subset(x_tr, y_tr, list(SOURCE))
    xt_all, yt_all = _subset(x_tr, y_tr, list(TARGET))
    xt_te, yt_te = _subset(x_te, y_te, list(TARGET))
    xs_te, ys_te = _subset(x_te, y_te, list(SOURCE))
    out = {arm: {"acc": [], "b_norm": []} for arm in ARMS}
    out["source_acc"] = []
    for seed in seeds:
        backbone, head = pretrain(xs, ys, seed)
        with torch.no_grad():
            out["source_acc"].append(float((head(backbone(xs_te)).argmax(1) == ys_te).float().mean()))
        g = torch.Generator().manual_seed(seed)
        pick = torch.cat([torch.nonzero(yt_all == c).flatten()[torch.randperm(int((yt_all == c).sum()), generator=g)
                                                              [:PER_CLASS]] for c in range(len(TARGET))])
        for arm in ARMS:
            r = adapt(backbone, arm, xt_all[pick], yt_all[pick], xt_te, yt_te, steps, seed, optimizer)
            out[arm]["acc"].append(r["acc"])
            out[arm]["b_norm"].append(r["b_norm"])
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Check mean ALLoRA accuracy >= mean LoRA accuracy after 60 steps (AdamW), averaged over seeds."""
    seeds = list(range(3 if scale == "quick" else 10))
    res = compare(seeds)
    mean = {arm: float(np.mean(res[arm]["acc"])) for arm in ARMS}
    diff = np.array(res["allora"]["acc"]) - np.array(res["lora"]["acc"])
    measured = {"seeds": len(seeds), "steps": STEPS, "optimizer": "adamw lr 1e-3",
                "source_test_acc_pretrained": float(np.mean(res["source_acc"])),
                **{f"acc_{arm}": mean[arm] for arm in ARMS},
                **{f"acc_{arm}_std": float(np.std(res[arm]["acc"])) for arm in ARMS},
                "allora_minus_lora": float(diff.mean()),
                "allora_minus_lora_se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0,
                "allora_wins": f"{int((diff > 0).sum())}/{len(diff)}",
                **{f"b_norm_step10_{arm}": float(np.mean(res[arm]["b_norm"])) for arm in ARMS}}
    if scale == "full":
        for steps in (20, 200):
            r = compare(seeds, steps)
            measured.update({f"acc_{arm}_{steps}steps": float(np.mean(r[arm]["acc"])) for arm in ARMS})
        r = compare(seeds, STEPS, optimizer="sgd")
        measured.update({f"acc_{arm}_sgd": float(np.mean(r[arm]["acc"])) for arm in ARMS})
        measured.update({f"b_norm_step10_{arm}_sgd": float(np.mean(r[arm]["b_norm"])) for arm in ARMS})
    held = mean["allora"] >= mean["lora"]
    return Claim(
        paper=PAPER.short_name,
        statement=("with a short fine-tuning budget, ALLoRA (no dropout, no alpha/r scaling, per-row gradient "
                   "coefficient 1/sqrt(||dW_i||^2 + 1/eta^2)) reaches at least LoRA's accuracy"),
        criterion=(f"mean target-test accuracy over {len(seeds)} seeds after {STEPS} AdamW steps: ALLoRA >= LoRA "
                   "(alpha 16, dropout 0.1)"),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=("MLP 64-256-256 pre-trained on digits 0-4, adapted to digits 5-9 with 50 examples/class; rank 8 on "
               "both hidden layers plus a new head. The coefficient's exact form and eta are our reading of the "
               "abstract (see docs/papers.md); the paper's LLM benchmarks are not run."),
    )


PAPER = Paper(
    number=37,
    short_name="allora",
    title="ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws",
    category="PEFT/adapter",
    status="claim checked",
    implemented_by=("lifelong.adapters.allora", "lifelong.adapters.lora", "lifelong.methods.lora_seq"),
    arxiv="2410.09692",
    reproduce=reproduce,
)
