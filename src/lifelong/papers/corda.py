"""Paper 4: *CorDA: Context-Oriented Decomposition Adaptation of Large Language Models* (Yang et al.,
NeurIPS 2024, arXiv:2406.05223). Implemented by :mod:`lifelong.adapters.corda` on the LoRA layer.

Claims: CorDA reconstructs the pre-trained weights exactly before training; the knowledge-preserved
adapter (KPA) forgets less than LoRA at matched new-task accuracy; the instruction-previewed adapter
(IPA) learns the new task at least as well as LoRA. Checked on an MLP pre-trained on some digits and
adapted to the others; protocol in ``specs/corda.toml``. Run ``lifelong reproduce corda``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


@torch.no_grad()
def _acc(body, head, x, y) -> float:
    return float((head(body(x)).argmax(1) == y).float().mean())


def adapt(body, head_a, arm: str, data, steps: int, seed: int, settings: dict) -> dict:
    """Train one arm for ``steps``; reconstruction error and (step, task acc, knowledge acc) at each checkpoint."""
    from lifelong.adapters import LoRAConfig, adapter_parameters, inject_adapter, lora_layers
    from lifelong.adapters.corda import CorDAConfig, corda_inject
    from lifelong.data import cycle_batches

    (xa, _), (xa_te, ya_te), (xb, yb), (xb_te, yb_te) = data
    targets, rank, alpha, every = settings["targets"], settings["rank"], settings["alpha"], settings["eval_every"]
    spec = settings["arms"][arm]
    model = copy.deepcopy(body)
    g = torch.Generator().manual_seed(1000 + seed)
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in targets}
    if spec["kind"] == "lora":
        inject_adapter(model, LoRAConfig(r=rank, alpha=alpha, target_modules=targets), "a", generator=g)
    else:
        calib = xa if spec["calibration"] == "knowledge" else xb
        pick = torch.randperm(len(calib), generator=g)[: settings["calibration"]]
        corda_inject(
            model,
            CorDAConfig(r=rank, alpha=alpha, target_modules=targets, mode=spec["mode"]),
            calib[pick],
            "a",
            generator=g,
        )
    recon = max(
        float((l.base_layer.weight + l.delta_weight("a") - weights[n]).detach().abs().max())
        for n, l in lora_layers(model).items()
    )
    torch.manual_seed(2000 + seed)
    head_b = nn.Linear(head_a.in_features, int(yb.max()) + 1)
    opt = torch.optim.Adam([*adapter_parameters(model, "a"), *head_b.parameters()], lr=settings["lr"])
    curve = []
    for step, idx in enumerate(cycle_batches(len(yb), settings["batch_size"], steps, g), start=1):
        model.train()
        loss = F.cross_entropy(head_b(model(xb[idx])), yb[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            model.eval()
            curve.append((step, _acc(model, head_b, xb_te, yb_te), _acc(model, head_a, xa_te, ya_te)))
    return {"recon": recon, "curve": curve}


def compare(settings: dict, steps: int) -> dict:
    """Run every arm for every seed; per-seed curves and the pre-trained knowledge accuracy."""
    from lifelong.encoders.pretrain import pretrain_mlp
    from lifelong.papers.common import digits_tasks

    data = digits_tasks(settings["knowledge"], settings["task"])
    out = {"before": [], **{arm: [] for arm in settings["arms"]}}
    for seed in settings["seeds"]:
        body, head_a = pretrain_mlp(*data[0], seed, **settings["pretrain"])
        out["before"].append(_acc(body, head_a, *data[1]))
        for arm in settings["arms"]:
            out[arm].append(adapt(body, head_a, arm, data, steps, seed, settings))
    return out


def summarise(res: dict, match_within: float) -> dict:
    """Mean curves over seeds and the matched-accuracy forgetting comparison."""
    before = float(np.mean(res["before"]))
    curves = {arm: np.mean([[c[1:] for c in r["curve"]] for r in res[arm]], axis=0) for arm in ("lora", "kpa", "ipa")}
    steps = [c[0] for c in res["lora"][0]["curve"]]
    lora_acc, lora_know = curves["lora"][-1]
    matched = [i for i, (acc, _) in enumerate(curves["kpa"]) if acc >= lora_acc - match_within]
    out = {
        "knowledge_acc_before": before,
        "recon_max_abs_err": max(r["recon"] for arm in ("kpa", "ipa") for r in res[arm]),
        **{f"{arm}_task_acc": float(curves[arm][-1][0]) for arm in curves},
        **{f"{arm}_forgetting": before - float(curves[arm][-1][1]) for arm in curves},
        "lora_forgetting_at_end": before - float(lora_know),
    }
    if matched:
        i = matched[0]
        out.update(
            {
                "kpa_matched_step": steps[i],
                "kpa_matched_task_acc": float(curves["kpa"][i][0]),
                "kpa_forgetting_matched": before - float(curves["kpa"][i][1]),
            }
        )
    else:
        out.update({"kpa_matched_step": -1, "kpa_forgetting_matched": float("nan")})
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Check CorDA's claims at ``scale`` (settings from ``specs/corda.toml``)."""
    return check(load_spec("corda", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Check CorDA's exact reconstruction, KPA's lower forgetting at matched accuracy and IPA's >= LoRA accuracy."""
    seeds, steps, within = settings["seeds"], settings["steps"], settings["match_within"]
    ratio = settings["max_forgetting_ratio"]
    m = summarise(compare(settings, steps), within)
    lora_f = m["lora_forgetting_at_end"]
    held_a = m["recon_max_abs_err"] < settings["max_recon_error"]
    held_b = m["kpa_matched_step"] > 0 and m["kpa_forgetting_matched"] <= ratio * max(lora_f, 0.0)
    held_c = m["ipa_task_acc"] >= m["lora_task_acc"]
    measured = {
        "seeds": len(seeds),
        "steps": steps,
        **m,
        "held_reconstruction": bool(held_a),
        "held_kpa_forgetting": bool(held_b),
        "held_ipa_accuracy": bool(held_c),
    }
    if settings["long_steps"] > 0:
        m_long = summarise(compare(settings, settings["long_steps"]), within)
        measured.update(
            {f"{k}_{settings['long_steps']}steps": v for k, v in m_long.items() if k != "knowledge_acc_before"}
        )
    hidden = "-".join(map(str, settings["pretrain"]["hidden"]))
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "CorDA reconstructs the pre-trained weights exactly before training; the knowledge-preserved "
            "adapter forgets the knowledge task at most half as much as LoRA at matched new-task accuracy; "
            "the instruction-previewed adapter reaches at least LoRA's new-task accuracy"
        ),
        criterion=(
            f"(a) max|W - (W_res + sBA)| < {settings['max_recon_error']:g}; (b) KPA knowledge-accuracy drop "
            f"at the first checkpoint within {within * 100:g} points of LoRA's final task accuracy <= "
            f"{ratio:g} x LoRA's drop; (c) IPA task accuracy >= LoRA's after {steps} steps; means over "
            f"{len(seeds)} seeds; all three must hold"
        ),
        measured=measured,
        held=bool(held_a and held_b and held_c),
        scale=scale,
        notes=(
            f"MLP 64-{hidden} pre-trained on digits {settings['knowledge'][0]}-{settings['knowledge'][-1]} "
            f"(knowledge, head A frozen), rank-{settings['rank']} adapters on {', '.join(settings['targets'])} "
            f"+ new head for digits {settings['task'][0]}-{settings['task'][-1]}; covariance from "
            f"{settings['calibration']} inputs. The paper's LLM benchmarks are not run."
        ),
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
