"""Paper 37: *ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws* (Huang & Balestriero,
arXiv:2410.09692, 2024). Implemented by :mod:`lifelong.adapters.allora` (on the LoRA layer of
:mod:`lifelong.adapters.lora`); ``lora-seq`` runs it with ``variant="allora"``.

Claim: in short fine-tuning runs ALLoRA (no dropout, no ``alpha / r``, a per-row learning rate
inversely proportional to the row's norm) reaches better accuracy than LoRA. Checked on an MLP
pre-trained on some digits and adapted to the others with few examples; every arm's learning rate
(and ALLoRA's ``eta``) is picked on a validation split; protocol in ``specs/allora.toml``. Run
``lifelong reproduce allora``.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def _config(spec: dict, rank: int, targets: list, eta: float | None):
    from lifelong.adapters import ALLoRAConfig, LoRAConfig

    spec = dict(spec)
    kind = spec.pop("kind")
    if kind == "allora":
        return ALLoRAConfig(r=rank, target_modules=targets, eta=eta, **spec)
    spec.setdefault("alpha", float(rank))  # no alpha: scaling 1, as ALLoRA
    return LoRAConfig(r=rank, target_modules=targets, **spec)


def _optimizer(name: str, params, lr: float, cfg: dict) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, **cfg)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **cfg)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {name!r}")


def adapt(
    backbone: nn.Module,
    arm: str,
    train: tuple[torch.Tensor, torch.Tensor],
    evals: dict,
    steps: int,
    seed: int,
    settings: dict,
    optimizer: str,
    lr: float,
    eta: float | None = None,
) -> dict:
    """Train adapter ``arm`` and a new head for ``steps`` steps at ``lr`` (and ``eta``).

    Returns the accuracy on each ``evals`` split (name -> (x, y)) and the mean over adapted layers
    of ``s ||B||_F`` (``s`` = the adapter's scaling, ``alpha / r`` for LoRA, 1 for ALLoRA) after
    ``record_b_at`` steps.
    """
    from lifelong.adapters import adapter_parameters, inject_adapter, lora_layers
    from lifelong.adapters.allora import attach_allora
    from lifelong.data import cycle_batches

    x, y = train
    spec = settings["arms"][arm]
    model = copy.deepcopy(backbone)
    g = torch.Generator().manual_seed(1000 + seed)
    inject_adapter(model, _config(spec, settings["rank"], settings["targets"], eta), "a", generator=g)
    model.train()
    torch.manual_seed(2000 + seed)
    head = nn.Linear(settings["pretrain"]["hidden"][-1], int(y.max()) + 1)
    opt = _optimizer(
        optimizer, [*adapter_parameters(model, "a"), *head.parameters()], lr, settings["optimizers"][optimizer]
    )
    if spec["kind"] == "allora":
        attach_allora(opt, model)
    b_norm = float("nan")
    for step, idx in enumerate(cycle_batches(len(y), settings["batch_size"], steps, g)):
        loss = F.cross_entropy(head(model(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 == settings["record_b_at"]:
            b_norm = float(
                np.mean(
                    [m.scaling("a") * float(m.lora_B["a"].weight.detach().norm()) for m in lora_layers(model).values()]
                )
            )
    model.eval()
    with torch.no_grad():
        acc = {k: float((head(model(xe)).argmax(1) == ye).float().mean()) for k, (xe, ye) in evals.items()}
    return {**acc, "b_norm": b_norm}


def _splits(settings: dict):
    """Per seed: (backbone, source test acc, target train, target validation); plus the target test split."""
    from lifelong.encoders.pretrain import pretrain_mlp
    from lifelong.papers.common import digits_tasks

    (xs, ys), (xs_te, ys_te), (xt_all, yt_all), test = digits_tasks(settings["source"], settings["target"])
    per_class, val_per_class = settings["per_class"], settings["val_per_class"]
    out = {}
    for seed in settings["seeds"]:
        backbone, head = pretrain_mlp(xs, ys, seed, **settings["pretrain"])
        with torch.no_grad():
            src = float((head(backbone(xs_te)).argmax(1) == ys_te).float().mean())
        g = torch.Generator().manual_seed(seed)
        tr, va = [], []
        for c in range(len(settings["target"])):
            idx = torch.nonzero(yt_all == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            if len(idx) < per_class + val_per_class:
                raise ValueError(f"class {c} has {len(idx)} training examples, fewer than per_class + val_per_class")
            tr.append(idx[:per_class])
            va.append(idx[per_class : per_class + val_per_class])
        tr, va = torch.cat(tr), torch.cat(va)
        out[seed] = (backbone, src, (xt_all[tr], yt_all[tr]), (xt_all[va], yt_all[va]))
    return out, test


def compare(settings: dict, steps: int, optimizer: str, splits=None) -> dict:
    """Every arm with its learning rate (and ALLoRA's eta) picked on validation, then scored on the test split.

    The grid is ``lr_grid[optimizer]`` for every arm (times ``eta_grid`` for ALLoRA); the score is
    the mean validation accuracy over the seeds. Returns per arm: the chosen values, the per-seed test
    accuracies and ``s ||B||_F``, and the validation score of every grid point.
    """
    from lifelong.papers.common import pick_on_validation

    splits, test = splits if splits is not None else _splits(settings)
    lr_grid = settings["lr_grid"][optimizer]
    out = {}
    for arm, spec in settings["arms"].items():
        grid = list(itertools.product(lr_grid, settings["eta_grid"])) if spec["kind"] == "allora" else lr_grid

        def run(value, evals_of, arm=arm, spec=spec):
            lr, eta = value if spec["kind"] == "allora" else (value, None)
            return [
                adapt(b, arm, train, evals_of(val), steps, seed, settings, optimizer, lr, eta)
                for seed, (b, _, train, val) in splits.items()
            ]

        best, scores = pick_on_validation(
            grid, lambda v, run=run: float(np.mean([r["val"] for r in run(v, lambda val: {"val": val})]))
        )
        res = run(best, lambda val: {"test": test})
        out[arm] = {
            "choice": best,
            "acc": [r["test"] for r in res],
            "b_norm": [r["b_norm"] for r in res],
            "val_scores": scores,
        }
    out["source_acc"] = [v[1] for v in splits.values()]
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Check ALLoRA >= LoRA + margin at ``scale`` (settings from ``specs/allora.toml``)."""
    return check(load_spec("allora", scale), scale)


def _choice(value) -> str:
    from lifelong.papers.common import sci

    return f"lr {sci(value[0])}, eta {value[1]:g}" if isinstance(value, tuple) else f"lr {sci(value)}"


def check(settings: dict, scale: str) -> Claim:
    """Paired per-seed verdict: ALLoRA's test accuracy >= LoRA's + margin, and its ``s ||B||_F`` early on larger."""
    from lifelong.papers.common import log_row, paired, paired_measured

    seeds, steps, opt_name, arms = settings["seeds"], settings["steps"], settings["optimizer"], settings["arms"]
    at, margin = settings["record_b_at"], settings["margin"]
    splits = _splits(settings)
    res = compare(settings, steps, opt_name, splits)
    mean = {arm: float(np.mean(res[arm]["acc"])) for arm in arms}
    p_acc = paired(res["allora"]["acc"], res["lora"]["acc"], margin)
    p_b = paired(res["allora"]["b_norm"], res["lora"]["b_norm"], 0.0)
    measured = {
        "seeds": len(seeds),
        "steps": steps,
        "optimizer": opt_name,
        "source_test_acc_pretrained": float(np.mean(res["source_acc"])),
        **{f"chosen_{arm}": _choice(res[arm]["choice"]) for arm in arms},
        **{f"acc_{arm}": mean[arm] for arm in arms},
        **paired_measured("allora_minus_lora", p_acc),
        "allora_wins_vs_lora": f"{int(np.sum(np.subtract(res['allora']['acc'], res['lora']['acc']) > 0))}/{len(seeds)}",
        **{f"sB_norm_step{at}_{arm}": float(np.mean(res[arm]["b_norm"])) for arm in arms},
        **paired_measured(f"sB_step{at}_allora_minus_lora", p_b),
    }
    for other in [a for a in arms if a not in ("allora", "lora")]:
        measured.update(paired_measured(f"allora_minus_{other}", paired(res["allora"]["acc"], res[other]["acc"])))
    log_row("allora", scale=scale, steps=steps, optimizer=opt_name, **{a: mean[a] for a in arms})
    for extra in settings["extra_steps"]:
        r = compare(settings, extra, opt_name, splits)
        measured.update({f"acc_{arm}_{extra}steps": float(np.mean(r[arm]["acc"])) for arm in arms})
        measured.update(
            paired_measured(f"allora_minus_lora_{extra}steps", paired(r["allora"]["acc"], r["lora"]["acc"]))
        )
        log_row(
            "allora", scale=scale, steps=extra, optimizer=opt_name, **{a: float(np.mean(r[a]["acc"])) for a in arms}
        )
    for other in settings["extra_optimizers"]:
        r = compare(settings, steps, other, splits)
        measured.update({f"acc_{arm}_{other}": float(np.mean(r[arm]["acc"])) for arm in arms})
        measured.update({f"chosen_{arm}_{other}": _choice(r[arm]["choice"]) for arm in arms})
        measured.update(paired_measured(f"allora_minus_lora_{other}", paired(r["allora"]["acc"], r["lora"]["acc"])))
        measured.update({f"sB_norm_step{at}_{arm}_{other}": float(np.mean(r[arm]["b_norm"])) for arm in arms})
        log_row("allora", scale=scale, steps=steps, optimizer=other, **{a: float(np.mean(r[a]["acc"])) for a in arms})
    held = p_acc["held"] and p_b["held"]
    measured["held_accuracy"] = bool(p_acc["held"])
    measured["held_b_norm"] = bool(p_b["held"])
    lora = arms["lora"]
    hidden = "-".join(map(str, settings["pretrain"]["hidden"]))
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "with a short fine-tuning budget, ALLoRA (no dropout, no alpha/r scaling, per-row learning rate "
            "1/sqrt(||theta_i||^2 + 1/eta^2)) reaches better accuracy than LoRA and moves B away from 0 faster"
        ),
        criterion=(
            f"paired over {len(seeds)} seeds after {steps} {opt_name} steps, each arm's lr (and ALLoRA's eta) "
            f"picked on a validation split: ALLoRA - LoRA (alpha {lora['alpha']:g}, dropout {lora['dropout']:g}) "
            f"target-test accuracy >= {margin:g} with the 95 % interval above 0; and s*||B||_F after {at} steps "
            "(s = alpha/r, 1 for ALLoRA) larger for ALLoRA (interval above 0)"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            f"MLP 64-{hidden} pre-trained on digits {settings['source'][0]}-{settings['source'][-1]}, adapted to "
            f"digits {settings['target'][0]}-{settings['target'][-1]} with {settings['per_class']} "
            f"examples/class ({settings['val_per_class']}/class more for validation); rank {settings['rank']} on "
            f"{', '.join(settings['targets'])} plus a new head. lora_control = LoRA with alpha = r and no dropout: "
            "ALLoRA without its per-row learning rate. The coefficient's exact form, its row granularity and the "
            "eta grid are our reading of the abstract (see docs/papers/allora.md); the paper's LLM benchmarks are "
            "not run."
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
