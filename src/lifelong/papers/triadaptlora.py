"""Seed paper 45: *TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation for Parameter-Efficient
Fine-Tuning* (Liang, Wang, Zeng, arXiv:2501.08008, 2025). Mechanism-level implementation in
:mod:`lifelong.adapters.triadaptlora` (rank growth by normalised-Frobenius importance with a linear
threshold under a parameter budget; the triangular split is not implemented, see docs/papers.md).

Claim checked by :func:`reproduce` (protocol fixed before any run): an MLP 64-128-128-128
with a head is pre-trained on scikit-learn digits 0-4 (Adam lr 1e-3, batch 64, 10 epochs)
and frozen; adapters on its three hidden linear layers plus a new head are trained on
digits 5-9 (all training images, Adam lr 3e-3, batch 32, 100 steps). Arms: fixed-rank LoRA
(r = 4 per layer, alpha 8) and TriAdaptLoRA (capacity 8, alpha 16 so the per-component
scaling equals LoRA's, start rank 1 per layer, growth every 5 steps from step 5 to 60 under
a budget equal to LoRA's adapter parameter count). Pass: mean task-B test accuracy of
TriAdaptLoRA >= LoRA's, with final active adapter parameters <= LoRA's.
``quick``: 1 seed; ``full``: 5 seeds.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.papers.base import Claim, Paper

TARGETS = ["net.1", "net.3", "net.5"]
HIDDEN = (128, 128, 128)
STEPS = 100
LORA_RANK = 4
CAPACITY = 8


def adapt(body, arm: str, data, seed: int, steps: int = STEPS) -> dict:
    """Train one arm; returns task test accuracy, adapter parameters in use and final ranks."""
    from lifelong.adapters import LoRAConfig, adapter_parameters, count_parameters, inject_adapter
    from lifelong.adapters.triadaptlora import (RankGrowthController, TriAdaptLoRAConfig, active_parameter_count,
                                                ranks)

    _, _, (xb, yb), (xb_te, yb_te) = data
    model = copy.deepcopy(body)
    g = torch.Generator().manual_seed(1000 + seed)
    ctrl = None
    if arm == "lora":
        inject_adapter(model, LoRAConfig(r=LORA_RANK, alpha=2.0 * LORA_RANK, target_modules=TARGETS), "a", generator=g)
    else:
        inject_adapter(model, TriAdaptLoRAConfig(r=CAPACITY, alpha=2.0 * CAPACITY, init_rank=1,
                                                 target_modules=TARGETS), "a", generator=g)
        budget = sum(LORA_RANK * (model.get_submodule(n).in_features + model.get_submodule(n).out_features)
                     for n in TARGETS)
        ctrl = RankGrowthController(model, "a", budget=budget, t_init=5, t_final=60, delta_t=5)
    torch.manual_seed(2000 + seed)
    head = nn.Linear(HIDDEN[-1], int(yb.max()) + 1)
    opt = torch.optim.Adam([*adapter_parameters(model, "a"), *head.parameters()], lr=3e-3)
    order, pos = torch.randperm(len(yb), generator=g), 0
    model.train()
    for step in range(1, steps + 1):
        if pos + 32 > len(order):
            order, pos = torch.randperm(len(yb), generator=g), 0
        idx = order[pos:pos + 32]
        pos += 32
        loss = F.cross_entropy(head(model(xb[idx])), yb[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ctrl is not None:
            ctrl.step(step)
    model.eval()
    with torch.no_grad():
        acc = float((head(model(xb_te)).argmax(1) == yb_te).float().mean())
    if ctrl is None:
        params, rk = count_parameters(model).adapters["a"], {n: LORA_RANK for n in TARGETS}
    else:
        params, rk = active_parameter_count(model, "a"), ranks(model, "a")
    return {"acc": acc, "params": params, "ranks": rk}


def reproduce(scale: str = "quick") -> Claim:
    """Check TriAdaptLoRA-style growth reaches >= fixed-rank LoRA accuracy with <= its adapter parameters."""
    from lifelong.papers.corda import digits_tasks, pretrain

    seeds = list(range(1 if scale == "quick" else 5))
    data = digits_tasks()
    res = {"lora": [], "tri": []}
    for seed in seeds:
        body, _ = pretrain(*data[0], seed, hidden=HIDDEN)
        for arm in res:
            res[arm].append(adapt(body, arm, data, seed))
    acc = {arm: float(np.mean([r["acc"] for r in res[arm]])) for arm in res}
    params = {arm: max(r["params"] for r in res[arm]) for arm in res}
    final_ranks = {n: float(np.mean([r["ranks"][n] for r in res["tri"]])) for n in TARGETS}
    held = acc["tri"] >= acc["lora"] and params["tri"] <= params["lora"]
    return Claim(
        paper=PAPER.short_name,
        statement=("adaptive rank growth (normalised-Frobenius importance, linear threshold, parameter budget) "
                   "reaches at least fixed-rank LoRA's accuracy with no more trainable parameters"),
        criterion=(f"mean digits-5-9 test accuracy over {len(seeds)} seeds after {STEPS} steps: TriAdaptLoRA >= "
                   f"LoRA (r={LORA_RANK}/layer) and TriAdaptLoRA's active adapter parameters <= LoRA's"),
        measured={"seeds": len(seeds), "steps": STEPS, "acc_lora": acc["lora"], "acc_triadaptlora": acc["tri"],
                  "acc_diff": acc["tri"] - acc["lora"],
                  "tri_wins": f"{sum(t['acc'] > l['acc'] for t, l in zip(res['tri'], res['lora']))}/{len(seeds)}",
                  "params_lora": params["lora"], "params_triadaptlora_max": params["tri"],
                  **{f"mean_rank_{n}": v for n, v in final_ranks.items()}},
        held=bool(held),
        scale=scale,
        notes=("MLP 64-128-128-128 pre-trained on digits 0-4, adapted to digits 5-9; only rank growth + "
               "importance + linear threshold are implemented (the triangular split's form is unverified). "
               "The paper's GLUE/SQuAD benchmarks are not run."),
    )


PAPER = Paper(
    number=45,
    short_name="triadaptlora",
    title="TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation for Parameter-Efficient Fine-Tuning",
    category="PEFT/adapter",
    status="claim checked",
    implemented_by=("lifelong.adapters.triadaptlora", "lifelong.adapters.lora"),
    arxiv="2501.08008",
    reproduce=reproduce,
)
