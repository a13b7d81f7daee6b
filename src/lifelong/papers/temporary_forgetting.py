"""Paper 36: *Dual Process Learning: Controlling Use of In-Context vs. In-Weights Strategies with Weight Forgetting*
(Anand, Lepori, Merullo & Pavlick, ICLR 2025, arXiv 2406.00053). Task: :mod:`lifelong.incontext.tasks.dual_process`;
model: :class:`lifelong.incontext.models.PromptTransformer`; forgetting: :class:`lifelong.incontext.forgetting.
EmbeddingReset` as an ``on_step`` hook of :func:`lifelong.incontext.train.train`.

Claim: re-initialising the token embeddings every k steps (active forgetting) makes a model solve the task from the
sentence structure, so it works on never-seen tokens, at the cost of in-weights answers for frequent tokens;
forgetting only during the first part of training (temporary forgetting) keeps both. Arms share seeds, steps and the
lr grid (each picks its lr by its own validation loss). Protocol in ``specs/temporary-forgetting.toml``; notes in
``docs/papers/temporary-forgetting.md``. Run ``lifelong reproduce temporary-forgetting``.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec

EVAL_SETS = ("train", "holdout", "switch", "tail_switch")


def make_task(cfg: dict, seed: int):
    """The part-of-speech task of the spec (ambiguous tokens chosen by ``seed``)."""
    from lifelong.incontext.tasks.dual_process import DualProcessTask

    t = cfg["task"]
    return DualProcessTask(vocab=t["vocab"], zipf=t["zipf"], prop_amb=t["prop_amb"], seed=seed)


def make_model(cfg: dict, task, seed: int):
    """The spec's transformer over the task's vocabulary (paired tokens: the sentence, then the query)."""
    from lifelong.incontext.models import PromptTransformer

    m = cfg["model"]
    torch.manual_seed(seed)
    return PromptTransformer(
        1,
        2,
        "classes",
        d_model=m["d_model"],
        layers=m["layers"],
        heads=m["heads"],
        tokens="paired",
        x_vocab=task.num_tokens,
        max_points=4,
    )


def run_arm(cfg: dict, arm: dict, seed: int, lr: float) -> dict:
    """Train one arm (``every``: steps between embedding resets, 0 for none; ``until_fraction``: resets only in
    that first fraction of the steps) and return its accuracy curves on the evaluation sets.

    Held-out tokens get the same embedding draw (from the embedding's init distribution) before every evaluation,
    in every arm of a seed: they stand for tokens the model has never seen.
    """
    from lifelong.incontext.forgetting import EmbeddingReset
    from lifelong.incontext.train import TrainConfig, predict, prompt_loss, train

    task = make_task(cfg, seed)
    g = torch.Generator().manual_seed(20_000 + seed)
    sets = {name: task.with_mode(name).sample(cfg["eval_prompts"], g) for name in EVAL_SETS}
    val = task.sample(cfg["eval_prompts"], g)
    model = make_model(cfg, task, seed)
    held = task.holdout_tokens
    fresh = torch.randn(len(held), cfg["model"]["d_model"], generator=g)  # nn.Embedding's init: N(0, 1)

    def evaluate(m, step):
        m.x_in.weight.data[held] = fresh
        return {
            name: float((predict(m, p)[:, -1].argmax(-1) == p.ys[:, -1]).float().mean()) for name, p in sets.items()
        }

    steps = cfg["steps"]
    until = int(round(arm["until_fraction"] * steps))
    hook = EmbeddingReset(arm["every"], until=until) if arm["every"] else None
    tc = TrainConfig(
        steps=steps,
        batch=cfg["batch"],
        lr=lr,
        optimizer=cfg["optimizer"],
        weight_decay=cfg["weight_decay"],
        loss_positions="last",
        eval_every=cfg["eval_every"],
        seed=seed,
    )
    history = train(model, task, tc, eval_fn=evaluate, on_step=hook, progress=False)
    model.x_in.weight.data[held] = fresh
    with torch.no_grad():
        val_loss = float(prompt_loss(predict(model, val), val, "last"))
    curves = {name: history.curve(name)[1] for name in EVAL_SETS}
    final = {name: curves[name][-1] for name in EVAL_SETS}
    return {
        "steps": history.curve("holdout")[0],
        "curves": curves,
        "novel": final["holdout"],
        "iwl_head": 1.0 - final["switch"],
        "iwl_tail": 1.0 - final["tail_switch"],
        "in_distribution": final["train"],
        "resets": len(hook.resets) if hook else 0,
        "val_loss": val_loss,
    }


def tune(cfg: dict) -> dict:
    """Each arm's lr from ``lr_grid`` by its own validation loss (training-distribution prompts) on ``tune_seed``."""
    from lifelong.papers.common import log_row, pick_on_validation

    picked = {}
    for name, arm in cfg["arms"].items():
        if len(cfg["lr_grid"]) == 1:
            picked[name] = cfg["lr_grid"][0]
            continue

        def score(lr: float, arm: dict = arm) -> float:
            return -run_arm(cfg, arm, cfg["tune_seed"], lr)["val_loss"]

        lr, scores = pick_on_validation(cfg["lr_grid"], score)
        picked[name] = lr
        log_row("temporary-forgetting", kind="tune", arm=name, lr=lr, scores={str(k): v for k, v in scores.items()})
    return picked


def measure(cfg: dict) -> dict:
    """Tune, then train every arm on every seed (the same initial model and data stream per seed)."""
    from lifelong.papers.common import log_row

    picked = tune(cfg)
    runs = []
    for seed in cfg["seeds"]:
        row = {"seed": seed, **{name: run_arm(cfg, arm, seed, picked[name]) for name, arm in cfg["arms"].items()}}
        log_row(
            "temporary-forgetting",
            kind="run",
            seed=seed,
            **{a: {k: row[a][k] for k in ("novel", "iwl_head", "iwl_tail", "in_distribution")} for a in cfg["arms"]},
        )
        runs.append(row)
    return {"picked": picked, "runs": runs}


def transient(r: dict, drop: float) -> bool:
    """Whether a run's novel-token accuracy peaked and then lost at least ``drop`` by the end."""
    h = r["curves"]["holdout"]
    return max(h) - h[-1] >= drop


def verdict(result: dict, cfg: dict) -> dict:
    """Paired per-seed verdicts: active vs vanilla on novel tokens and on in-weights answers, temporary within its
    margins of both, and vanilla's structural ICL transient (the comparison is made after it decayed)."""
    from lifelong.papers.common import paired

    c = cfg["criteria"]
    runs = result["runs"]

    def col(arm, key):
        return [r[arm][key] for r in runs]

    v = {
        "active_novel": paired(col("active", "novel"), col("vanilla", "novel"), c["novel_gain"]),
        "vanilla_iwl": paired(col("vanilla", "iwl_head"), col("active", "iwl_head"), c["iwl_gain"]),
        "temporary_novel": paired(
            [t + c["temporary_novel_gap"] for t in col("temporary", "novel")], col("active", "novel"), 0.0
        ),
        "temporary_iwl": paired(
            [t + c["temporary_iwl_gap"] for t in col("temporary", "iwl_head")], col("vanilla", "iwl_head"), 0.0
        ),
        "vanilla_transient": all(transient(r["vanilla"], c["transient_drop"]) for r in runs),
    }
    v["active_vs_vanilla_held"] = bool(v["active_novel"]["held"] and v["vanilla_iwl"]["held"])
    v["temporary_held"] = bool(v["temporary_novel"]["held"] and v["temporary_iwl"]["held"])
    gate = v["vanilla_transient"] or not c["require_transient"]
    v["held"] = bool(v["active_vs_vanilla_held"] and v["temporary_held"] and gate)
    return v


def _measured(result: dict, v: dict, cfg: dict) -> dict:
    from lifelong.papers.common import paired_measured

    runs = result["runs"]
    m: dict = {f"picked_lr_{a}": lr for a, lr in result["picked"].items()}
    for a in cfg["arms"]:
        for k in ("novel", "iwl_head", "iwl_tail", "in_distribution"):
            m[f"{a}_{k}"] = round(float(np.mean([r[a][k] for r in runs])), 4)
        m[f"{a}_resets"] = runs[0][a]["resets"]
    for r in runs:
        h = r["vanilla"]["curves"]["holdout"]
        m[f"seed{r['seed']}_vanilla_novel_peak"] = round(max(h), 4)
        m[f"seed{r['seed']}_vanilla_novel_peak_step"] = r["vanilla"]["steps"][int(np.argmax(h))]
        m[f"seed{r['seed']}_vanilla_novel_end"] = round(h[-1], 4)
    m["seed0_vanilla_novel_curve"] = " ".join(f"{x:.2f}" for x in runs[0]["vanilla"]["curves"]["holdout"])
    m["seed0_temporary_novel_curve"] = " ".join(f"{x:.2f}" for x in runs[0]["temporary"]["curves"]["holdout"])
    m.update(paired_measured("novel: active - vanilla", v["active_novel"]))
    m.update(paired_measured("iwl head: vanilla - active", v["vanilla_iwl"]))
    m.update(paired_measured("novel: temporary + gap - active", v["temporary_novel"]))
    m.update(paired_measured("iwl head: temporary + gap - vanilla", v["temporary_iwl"]))
    for part in ("active_novel", "vanilla_iwl", "temporary_novel", "temporary_iwl"):
        m[f"{part}_held"] = v[part]["held"]
    m["vanilla_transient_every_seed"] = v["vanilla_transient"]
    m["active_vs_vanilla_held"] = v["active_vs_vanilla_held"]
    m["temporary_held"] = v["temporary_held"]
    m["held"] = v["held"]
    return m


def reproduce(scale: str = "quick") -> Claim:
    """Run the protocol of ``specs/temporary-forgetting.toml`` at ``scale``."""
    return check(load_spec("temporary-forgetting", scale), scale)


def check(cfg: dict, scale: str) -> Claim:
    """Measure vanilla, active and temporary forgetting and judge the claim."""
    result = measure(cfg)
    v = verdict(result, cfg)
    c, a, t = cfg["criteria"], cfg["arms"], cfg["task"]
    grid = ", ".join(f"{x:g}" for x in cfg["lr_grid"])
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "active forgetting (re-initialising token embeddings every k steps) forces structural in-context "
            "learning that works on unseen tokens at the cost of in-weights answers for frequent tokens; "
            "temporary forgetting (only for the first N steps) gives a dual-process model that keeps both"
        ),
        criterion=(
            f"role-of-the-query task, vocab {t['vocab']} (+ {t['vocab'] // 10} held-out tokens), Zipf "
            f"{t['zipf']}, {t['prop_amb']:.0%} ambiguous tokens; {cfg['model']['layers']}-layer transformer "
            f"(d={cfg['model']['d_model']}), {cfg['steps']} steps of batch {cfg['batch']}, {cfg['optimizer']} "
            f"(weight decay {cfg['weight_decay']}), each arm's lr from {{{grid}}} by its validation loss; "
            f"active: reset every {a['active']['every']} steps; temporary: every {a['temporary']['every']} steps "
            f"for the first {a['temporary']['until_fraction']:.0%}; seeds {list(cfg['seeds'])}, paired: novel-token "
            f"accuracy active - vanilla >= {c['novel_gain'] * 100:g} pts; in-weights preference on frequent "
            f"conflicting tokens (1 - switch accuracy) vanilla - active >= {c['iwl_gain'] * 100:g} pts; temporary "
            f"within {c['temporary_novel_gap'] * 100:g} pts of active on novel tokens and within "
            f"{c['temporary_iwl_gap'] * 100:g} pts of vanilla on in-weights preference (interval of the difference "
            f"plus the margin above 0)"
            + (
                f"; vanilla's novel-token accuracy must have peaked and fallen by >= {c['transient_drop'] * 100:g} pts"
                if c["require_transient"]
                else ""
            )
        ),
        measured=_measured(result, v, cfg),
        held=v["held"],
        scale=scale,
        notes=(
            "Task departure: the official toy masks and copies three words with a BERT MLM (tied embeddings); here "
            "the model names the query's role, the decision the copy depends on. Held-out tokens get one fixed draw "
            "from the embedding's init distribution before every evaluation. See docs/papers/temporary-forgetting.md."
        ),
    )


PAPER = Paper(
    number=36,
    short_name="temporary-forgetting",
    title="Dual Process Learning: Controlling Use of In-Context vs. In-Weights Strategies with Weight Forgetting",
    category="in-context learning",
    status="claim checked",
    implemented_by=(
        "lifelong.incontext.tasks.dual_process",
        "lifelong.incontext.forgetting",
        "lifelong.incontext.models",
    ),
    arxiv="2406.00053",
    reproduce=reproduce,
)
