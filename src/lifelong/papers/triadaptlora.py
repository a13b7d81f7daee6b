"""Seed paper 45: *TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation for Parameter-Efficient
Fine-Tuning* (Liang, Wang, Zeng, arXiv:2501.08008, 2025). Implemented in :mod:`lifelong.adapters.triadaptlora`:
update ``s B (tril(L) + triu(U)) A`` with a triangular core that grows one row + one column per rank step,
importance = increase of ``||C||_F / k`` since the previous check, and the top-``n`` threshold whose ``n`` rises
linearly with training progress (parameterisation and schedule from a public implementation citing the paper;
the paper's text itself was not readable, see docs/papers.md).

Claim checked by :func:`reproduce` (protocol fixed before any run): an MLP 64-128-128-128 with a head is
pre-trained on scikit-learn digits 0-4 (Adam lr 1e-3, batch 64, 10 epochs) and frozen; adapters on its three
hidden linear layers plus a new head are trained on digits 5-9 (all training images, Adam lr 3e-3, batch 32,
100 steps). Arms:

- ``lora``: fixed-rank LoRA, r = 4 per layer, alpha 8 (2,816 adapter parameters);
- ``tri``: TriAdaptLoRA, triangular core, capacity 8, alpha 16 (per-component scaling equal to LoRA's), start
  rank 1 per layer, :class:`~lifelong.adapters.triadaptlora.TriangularGrowthController` with the linear
  schedule, a check every 5 steps in (0, 60], target total rank 12 (= LoRA's 3 x 4) and a hard budget of
  LoRA's 2,816 adapter parameters, counting the core's ``k (k + 1)`` entries;
- ``mask`` (ablation, the earlier abstract-only reading): no core, rank mask only, importance
  ``||dW||_F / sqrt(params)`` and a threshold falling linearly from 1 to 0, growth every 5 steps in [5, 60),
  same budget;
- ``tri_orth`` (ablation): ``tri`` plus the public code's orthogonality penalty on ``A``/``B`` with its default
  weight 0.5 (:func:`~lifelong.adapters.triadaptlora.orthogonal_penalty`).

Pass: mean task test accuracy of ``tri`` >= ``lora``'s, with ``tri``'s final active adapter parameters <=
LoRA's. ``quick``: 1 seed; ``full``: 5 seeds.
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
ARMS = ("lora", "tri", "mask", "tri_orth")
ORTH_WEIGHT = 0.5


def adapt(body, arm: str, data, seed: int, steps: int = STEPS) -> dict:
    """Train one arm (``lora``, ``tri``, ``mask`` or ``tri_orth``).

    Returns task test accuracy, adapter parameters in use and final ranks.
    """
    from lifelong.adapters import LoRAConfig, adapter_parameters, count_parameters, inject_adapter
    from lifelong.adapters.triadaptlora import (RankGrowthController, TriAdaptLoRAConfig,
                                                TriangularGrowthController, active_parameter_count,
                                                orthogonal_penalty, ranks)
    from lifelong.data import cycle_batches

    _, _, (xb, yb), (xb_te, yb_te) = data
    model = copy.deepcopy(body)
    g = torch.Generator().manual_seed(1000 + seed)
    ctrl = None
    budget = sum(LORA_RANK * (model.get_submodule(n).in_features + model.get_submodule(n).out_features)
                 for n in TARGETS)
    if arm == "lora":
        inject_adapter(model, LoRAConfig(r=LORA_RANK, alpha=2.0 * LORA_RANK, target_modules=TARGETS), "a", generator=g)
    else:
        inject_adapter(model, TriAdaptLoRAConfig(r=CAPACITY, alpha=2.0 * CAPACITY, init_rank=1,
                                                 triangular=arm != "mask", target_modules=TARGETS), "a", generator=g)
        if arm != "mask":
            ctrl = TriangularGrowthController(model, "a", budget=budget, t_init=0, t_final=60, delta_t=5,
                                              target_total_rank=LORA_RANK * len(TARGETS), schedule="linear")
        else:
            ctrl = RankGrowthController(model, "a", budget=budget, t_init=5, t_final=60, delta_t=5)
    torch.manual_seed(2000 + seed)
    head = nn.Linear(HIDDEN[-1], int(yb.max()) + 1)
    opt = torch.optim.Adam([*adapter_parameters(model, "a"), *head.parameters()], lr=3e-3)
    batches = cycle_batches(len(yb), 32, steps, g)
    model.train()
    for step, idx in enumerate(batches, start=1):
        loss = F.cross_entropy(head(model(xb[idx])), yb[idx])
        if arm == "tri_orth":
            loss = loss + ORTH_WEIGHT * orthogonal_penalty(model, "a")
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


def seed_sweep(n_seeds: int = 20) -> dict:
    """Paired per-seed comparison over ``n_seeds`` seeds (a benchmark, not a test; TriAdaptLoRA, arXiv:2501.08008).

    Returns the mean accuracy per arm and, for each growth arm minus LoRA, the mean, the paired
    standard error and the win / tie counts.
    """
    from lifelong.papers.corda import digits_tasks, pretrain

    data = digits_tasks()
    acc = {arm: [] for arm in ARMS}
    for seed in range(n_seeds):
        body, _ = pretrain(*data[0], seed, hidden=HIDDEN)
        for arm in ARMS:
            acc[arm].append(adapt(body, arm, data, seed)["acc"])
    out = {"seeds": n_seeds, **{f"acc_{arm}": float(np.mean(v)) for arm, v in acc.items()}}
    for arm in ("tri", "mask", "tri_orth"):
        d = np.array(acc[arm]) - np.array(acc["lora"])
        out.update({f"{arm}_minus_lora": float(d.mean()),
                    f"{arm}_minus_lora_se": float(d.std(ddof=1) / np.sqrt(len(d))),
                    f"{arm}_wins": int((d > 0).sum()), f"{arm}_ties": int((d == 0).sum())})
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Check triangular TriAdaptLoRA reaches >= fixed-rank LoRA accuracy with <= its adapter parameters."""
    from lifelong.papers.corda import digits_tasks, pretrain

    seeds = list(range(1 if scale == "quick" else 5))
    data = digits_tasks()
    res = {arm: [] for arm in ARMS}
    for seed in seeds:
        body, _ = pretrain(*data[0], seed, hidden=HIDDEN)
        for arm in ARMS:
            res[arm].append(adapt(body, arm, data, seed))
    acc = {arm: float(np.mean([r["acc"] for r in res[arm]])) for arm in ARMS}
    params = {arm: max(r["params"] for r in res[arm]) for arm in ARMS}
    held = acc["tri"] >= acc["lora"] and params["tri"] <= params["lora"]
    measured = {"seeds": len(seeds), "steps": STEPS, "acc_lora": acc["lora"], "acc_triadaptlora": acc["tri"],
                "acc_mask_ablation": acc["mask"], "acc_tri_orth_ablation": acc["tri_orth"],
                "acc_diff": acc["tri"] - acc["lora"],
                "tri_wins": f"{sum(t['acc'] > l['acc'] for t, l in zip(res['tri'], res['lora']))}/{len(seeds)}",
                "params_lora": params["lora"], "params_triadaptlora_max": params["tri"],
                "params_mask_ablation_max": params["mask"], "params_tri_orth_ablation_max": params["tri_orth"]}
    for arm in ARMS:
        measured[f"acc_{arm}_per_seed"] = " ".join(f"{r['acc']:.3f}" for r in res[arm])
    for arm in ("tri", "mask", "tri_orth"):
        measured.update({f"mean_rank_{arm}_{n}": float(np.mean([r["ranks"][n] for r in res[arm]])) for n in TARGETS})
    return Claim(
        paper=PAPER.short_name,
        statement=("TriAdaptLoRA (triangular core B(tril L + triu U)A, rank growth by normalised-Frobenius importance "
                   "with a linear top-n threshold, parameter budget) reaches at least fixed-rank LoRA's accuracy "
                   "with no more trainable parameters"),
        criterion=(f"mean digits-5-9 test accuracy over {len(seeds)} seeds after {STEPS} steps: TriAdaptLoRA >= "
                   f"LoRA (r={LORA_RANK}/layer) and TriAdaptLoRA's active adapter parameters (core included) <= "
                   "LoRA's"),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=("MLP 64-128-128-128 pre-trained on digits 0-4, adapted to digits 5-9. Parameterisation and schedule "
               "follow a public implementation citing the paper (its zero init and alpha/k scaling replaced, see "
               "docs/papers.md); 'mask' (the earlier abstract-only reading) and 'tri_orth' (+ the code's "
               "orthogonality penalty, weight 0.5) are ablations. The paper's "
               "GLUE/SQuAD benchmarks are not run."),
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
