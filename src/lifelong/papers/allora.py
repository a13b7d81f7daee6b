"""Paper 37: *ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws* (Huang & Balestriero,
arXiv:2410.09692, 2024). Implemented by :mod:`lifelong.adapters.allora` (on the LoRA layer of
:mod:`lifelong.adapters.lora`); ``lora-seq`` runs it with ``variant="allora"``.

Claim: in short fine-tuning runs ALLoRA (no dropout, no ``alpha / r``, per-row gradient scaling
inversely proportional to the parameters' norm) reaches better accuracy than LoRA. Checked on an
MLP pre-trained on some digits and adapted to the others with few examples; protocol in
``specs/allora.toml``. Run ``lifelong reproduce allora``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def _config(spec: dict, rank: int, targets: list):
    from lifelong.adapters import ALLoRAConfig, LoRAConfig

    spec = dict(spec)
    kind = spec.pop("kind")
    if kind == "allora":
        return ALLoRAConfig(r=rank, target_modules=targets, **spec)
    return LoRAConfig(r=rank, target_modules=targets, **spec)


def _optimizer(name: str, params, cfg: dict) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, **cfg)
    return torch.optim.SGD(params, **cfg)


def adapt(
    backbone: nn.Module,
    arm: str,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    steps: int,
    seed: int,
    settings: dict,
    optimizer: str = "adamw",
) -> dict:
    """Train adapter ``arm`` and a new head for ``steps`` steps; test accuracy and ``||B||`` at ``record_b_at``."""
    from lifelong.adapters import adapter_parameters, inject_adapter, lora_layers
    from lifelong.data import cycle_batches

    model = copy.deepcopy(backbone)
    g = torch.Generator().manual_seed(1000 + seed)
    inject_adapter(model, _config(settings["arms"][arm], settings["rank"], settings["targets"]), "a", generator=g)
    model.train()
    torch.manual_seed(2000 + seed)
    head = nn.Linear(settings["pretrain"]["hidden"][-1], int(y.max()) + 1)
    params = [*adapter_parameters(model, "a"), *head.parameters()]
    opt = _optimizer(optimizer, params, settings["optimizers"][optimizer])
    b_norm = float("nan")
    for step, idx in enumerate(cycle_batches(len(y), settings["batch_size"], steps, g)):
        loss = F.cross_entropy(head(model(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 == settings["record_b_at"]:
            b_norm = float(np.mean([float(m.lora_B["a"].weight.detach().norm()) for m in lora_layers(model).values()]))
    model.eval()
    with torch.no_grad():
        acc = float((head(model(x_test)).argmax(1) == y_test).float().mean())
    return {"acc": acc, "b_norm": b_norm}


def compare(settings: dict, steps: int, optimizer: str) -> dict:
    """Target test accuracy of every arm for each seed (one pre-trained backbone per seed)."""
    from lifelong.encoders.pretrain import pretrain_mlp
    from lifelong.papers.common import digits_tasks

    (xs, ys), (xs_te, ys_te), (xt_all, yt_all), (xt_te, yt_te) = digits_tasks(settings["source"], settings["target"])
    arms, per_class = settings["arms"], settings["per_class"]
    out = {arm: {"acc": [], "b_norm": []} for arm in arms}
    out["source_acc"] = []
    for seed in settings["seeds"]:
        backbone, head = pretrain_mlp(xs, ys, seed, **settings["pretrain"])
        with torch.no_grad():
            out["source_acc"].append(float((head(backbone(xs_te)).argmax(1) == ys_te).float().mean()))
        g = torch.Generator().manual_seed(seed)
        pick = torch.cat(
            [
                torch.nonzero(yt_all == c).flatten()[torch.randperm(int((yt_all == c).sum()), generator=g)[:per_class]]
                for c in range(len(settings["target"]))
            ]
        )
        for arm in arms:
            r = adapt(backbone, arm, xt_all[pick], yt_all[pick], xt_te, yt_te, steps, seed, settings, optimizer)
            out[arm]["acc"].append(r["acc"])
            out[arm]["b_norm"].append(r["b_norm"])
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Check ALLoRA >= LoRA at ``scale`` (settings from ``specs/allora.toml``)."""
    return check(load_spec("allora", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Check mean ALLoRA accuracy >= mean LoRA accuracy after the short budget, averaged over seeds."""
    from lifelong.papers.common import sci

    seeds, steps, opt_name, arms = settings["seeds"], settings["steps"], settings["optimizer"], settings["arms"]
    at = settings["record_b_at"]
    res = compare(settings, steps, opt_name)
    mean = {arm: float(np.mean(res[arm]["acc"])) for arm in arms}
    diff = np.array(res["allora"]["acc"]) - np.array(res["lora"]["acc"])
    measured = {
        "seeds": len(seeds),
        "steps": steps,
        "optimizer": f"{opt_name} lr {sci(settings['optimizers'][opt_name]['lr'])}",
        "source_test_acc_pretrained": float(np.mean(res["source_acc"])),
        **{f"acc_{arm}": mean[arm] for arm in arms},
        **{f"acc_{arm}_std": float(np.std(res[arm]["acc"])) for arm in arms},
        "allora_minus_lora": float(diff.mean()),
        "allora_minus_lora_se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0,
        "allora_wins": f"{int((diff > 0).sum())}/{len(diff)}",
        **{f"b_norm_step{at}_{arm}": float(np.mean(res[arm]["b_norm"])) for arm in arms},
    }
    for extra in settings["extra_steps"]:
        r = compare(settings, extra, opt_name)
        measured.update({f"acc_{arm}_{extra}steps": float(np.mean(r[arm]["acc"])) for arm in arms})
    for other in settings["extra_optimizers"]:
        r = compare(settings, steps, other)
        measured.update({f"acc_{arm}_{other}": float(np.mean(r[arm]["acc"])) for arm in arms})
        measured.update({f"b_norm_step{at}_{arm}_{other}": float(np.mean(r[arm]["b_norm"])) for arm in arms})
    held = mean["allora"] >= mean["lora"]
    lora = arms["lora"]
    hidden = "-".join(map(str, settings["pretrain"]["hidden"]))
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "with a short fine-tuning budget, ALLoRA (no dropout, no alpha/r scaling, per-row gradient "
            "coefficient 1/sqrt(||dW_i||^2 + 1/eta^2)) reaches at least LoRA's accuracy"
        ),
        criterion=(
            f"mean target-test accuracy over {len(seeds)} seeds after {steps} {opt_name} steps: ALLoRA >= "
            f"LoRA (alpha {lora['alpha']:g}, dropout {lora['dropout']:g})"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            f"MLP 64-{hidden} pre-trained on digits {settings['source'][0]}-{settings['source'][-1]}, adapted to "
            f"digits {settings['target'][0]}-{settings['target'][-1]} with {settings['per_class']} "
            f"examples/class; rank {settings['rank']} on {', '.join(settings['targets'])} plus a new head. The "
            "coefficient's exact form and eta are our reading of the abstract (see docs/papers.md); the paper's "
            "LLM benchmarks are not run."
        ),
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
