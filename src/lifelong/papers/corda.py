"""Seed paper 4: *CorDA: Context-Oriented Decomposition Adaptation of Large Language Models* (Yang et al.,
NeurIPS 2024, arXiv:2406.05223). Implemented by :mod:`lifelong.adapters.corda` on the LoRA layer.

Claims checked by :func:`reproduce` (protocol fixed before any run, the catalogue's CPU
plan): an MLP 64-256-256 with head A is pre-trained on scikit-learn digits 0-4 (the
"knowledge"; Adam lr 1e-3, batch 64, 10 epochs). Head A is then frozen and rank-8
adapters (alpha 8) on both hidden layers plus a new head B are trained on digits 5-9
(all training images, Adam lr 1e-3, batch 32). Arms: LoRA (A Kaiming, B = 0), CorDA-KPA
(covariance from 256 digits-0-4 training inputs, smallest 8 components), CorDA-IPA
(covariance from 256 digits-5-9 training inputs, largest 8 components).

(a) reconstruction: max |W - (W_res + s B A)| over layers and seeds before training < 1e-4;
(b) forgetting at matched new-task accuracy: LoRA's task-B test accuracy after the
    budget is the target; KPA's forgetting (task-A test accuracy before - after) is read
    at the first checkpoint (every 10 steps) where KPA's task-B accuracy is within 2
    points of that target, and must be <= 0.5 x LoRA's forgetting (means over seeds);
(c) IPA's task-B test accuracy after the budget >= LoRA's (means over seeds).
``quick``: 1 seed, 50 steps; ``full``: 5 seeds, 50 steps plus a 200-step repeat of (b).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.papers.base import Claim, Paper

KNOWLEDGE = (0, 1, 2, 3, 4)
TASK = (5, 6, 7, 8, 9)
TARGETS = ["net.1", "net.3"]
RANK = 8
CALIB = 256
EVERY = 10


def _split(x, y, classes):
    keep = torch.isin(y, torch.tensor(classes))
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], remap[y[keep]]


def digits_tasks():
    """(knowledge train, knowledge test, task train, task test) as (x, y) pairs from scikit-learn digits."""
    from lifelong.data import load_digits

    d = load_digits()
    xtr, xte = d.x_train.flatten(1), d.x_test.flatten(1)
    return (_split(xtr, d.y_train, KNOWLEDGE), _split(xte, d.y_test, KNOWLEDGE),
            _split(xtr, d.y_train, TASK), _split(xte, d.y_test, TASK))


def pretrain(x, y, seed: int, epochs: int = 10, hidden=(256, 256)) -> tuple[nn.Module, nn.Module]:
    """Frozen MLP body and head trained on the knowledge task (Adam lr 1e-3, batch 64)."""
    from lifelong.encoders import MLP

    torch.manual_seed(seed)
    body = MLP((x.shape[1],), hidden)
    head = nn.Linear(hidden[-1], int(y.max()) + 1)
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for s in range(0, len(y), 64):
            idx = order[s:s + 64]
            loss = F.cross_entropy(head(body(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    body.eval()
    for p in [*body.parameters(), *head.parameters()]:
        p.requires_grad_(False)
    return body, head


@torch.no_grad()
def _acc(body, head, x, y) -> float:
    return float((head(body(x)).argmax(1) == y).float().mean())


def adapt(body, head_a, arm: str, data, steps: int, seed: int) -> dict:
    """Train one arm for ``steps``; returns reconstruction error and (task acc, knowledge acc) every EVERY steps."""
    from lifelong.adapters import LoRAConfig, adapter_parameters, inject_adapter, lora_layers
    from lifelong.adapters.corda import CorDAConfig, corda_inject
    from lifelong.data import cycle_batches

    (xa, _), (xa_te, ya_te), (xb, yb), (xb_te, yb_te) = data
    model = copy.deepcopy(body)
    g = torch.Generator().manual_seed(1000 + seed)
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in TARGETS}
    if arm == "lora":
        inject_adapter(model, LoRAConfig(r=RANK, alpha=float(RANK), target_modules=TARGETS), "a", generator=g)
    else:
        calib = xa if arm == "kpa" else xb
        pick = torch.randperm(len(calib), generator=g)[:CALIB]
        corda_inject(model, CorDAConfig(r=RANK, alpha=float(RANK), target_modules=TARGETS, mode=arm), calib[pick],
                     "a", generator=g)
    recon = max(float((l.base_layer.weight + l.delta_weight("a") - weights[n]).detach().abs().max())
                for n, l in lora_layers(model).items())
    torch.manual_seed(2000 + seed)
    head_b = nn.Linear(head_a.in_features, int(yb.max()) + 1)
    opt = torch.optim.Adam([*adapter_parameters(model, "a"), *head_b.parameters()], lr=1e-3)
    curve = []
    for step, idx in enumerate(cycle_batches(len(yb), 32, steps, g), start=1):
        model.train()
        loss = F.cross_entropy(head_b(model(xb[idx])), yb[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % EVERY == 0 or step == steps:
            model.eval()
            curve.append((step, _acc(model, head_b, xb_te, yb_te), _acc(model, head_a, xa_te, ya_te)))
    return {"recon": recon, "curve": curve}


def compare(seeds: list[int], steps: int) -> dict:
    """Run the three arms for every seed; per-seed curves and the pre-trained knowledge accuracy."""
    data = digits_tasks()
    out = {"before": [], "lora": [], "kpa": [], "ipa": []}
    for seed in seeds:
        body, head_a = pretrain(*data[0], seed)
        out["before"].append(_acc(body, head_a, *data[1]))
        for arm in ("lora", "kpa", "ipa"):
            out[arm].append(adapt(body, head_a, arm, data, steps, seed))
    return out


def summarise(res: dict) -> dict:
    """Mean curves over seeds and the matched-accuracy forgetting comparison."""
    before = float(np.mean(res["before"]))
    curves = {arm: np.mean([[c[1:] for c in r["curve"]] for r in res[arm]], axis=0) for arm in ("lora", "kpa", "ipa")}
    steps = [c[0] for c in res["lora"][0]["curve"]]
    lora_acc, lora_know = curves["lora"][-1]
    matched = [i for i, (acc, _) in enumerate(curves["kpa"]) if acc >= lora_acc - 0.02]
    out = {"knowledge_acc_before": before,
           "recon_max_abs_err": max(r["recon"] for arm in ("kpa", "ipa") for r in res[arm]),
           **{f"{arm}_task_acc": float(curves[arm][-1][0]) for arm in curves},
           **{f"{arm}_forgetting": before - float(curves[arm][-1][1]) for arm in curves},
           "lora_forgetting_at_end": before - float(lora_know)}
    if matched:
        i = matched[0]
        out.update({"kpa_matched_step": steps[i], "kpa_matched_task_acc": float(curves["kpa"][i][0]),
                    "kpa_forgetting_matched": before - float(curves["kpa"][i][1])})
    else:
        out.update({"kpa_matched_step": -1, "kpa_forgetting_matched": float("nan")})
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Check CorDA's exact reconstruction, KPA's lower forgetting at matched accuracy and IPA's >= LoRA accuracy."""
    seeds = list(range(1 if scale == "quick" else 5))
    steps = 50
    m = summarise(compare(seeds, steps))
    lora_f = m["lora_forgetting_at_end"]
    held_a = m["recon_max_abs_err"] < 1e-4
    held_b = m["kpa_matched_step"] > 0 and m["kpa_forgetting_matched"] <= 0.5 * max(lora_f, 0.0)
    held_c = m["ipa_task_acc"] >= m["lora_task_acc"]
    measured = {"seeds": len(seeds), "steps": steps, **m, "held_reconstruction": bool(held_a),
                "held_kpa_forgetting": bool(held_b), "held_ipa_accuracy": bool(held_c)}
    if scale == "full":
        m200 = summarise(compare(seeds, 200))
        measured.update({f"{k}_200steps": v for k, v in m200.items() if k != "knowledge_acc_before"})
    return Claim(
        paper=PAPER.short_name,
        statement=("CorDA reconstructs the pre-trained weights exactly before training; the knowledge-preserved "
                   "adapter forgets the knowledge task at most half as much as LoRA at matched new-task accuracy; "
                   "the instruction-previewed adapter reaches at least LoRA's new-task accuracy"),
        criterion=(f"(a) max|W - (W_res + sBA)| < 1e-4; (b) KPA knowledge-accuracy drop at the first checkpoint "
                   f"within 2 points of LoRA's final task accuracy <= 0.5 x LoRA's drop; (c) IPA task accuracy >= "
                   f"LoRA's after {steps} steps; means over {len(seeds)} seeds; all three must hold"),
        measured=measured,
        held=bool(held_a and held_b and held_c),
        scale=scale,
        notes=("MLP 64-256-256 pre-trained on digits 0-4 (knowledge, head A frozen), rank-8 adapters on both hidden "
               "layers + new head for digits 5-9; covariance from 256 inputs. The paper's LLM benchmarks are not run."),
    )


PAPER = Paper(
    number=4,
    short_name="corda",
    title="CorDA: Context-Oriented Decomposition Adaptation of Large Language Models",
    category="PEFT/adapter",
    status="claim checked",
    implemented_by=("lifelong.adapters.corda", "lifelong.adapters.lora"),
    arxiv="2406.05223",
    reproduce=reproduce,
)
