"""Paper 3: *General-Purpose In-Context Learning by Meta-Learning Transformers* (Kirsch, Harrison, Sohl-Dickstein &
Metz, arXiv 2212.04458). Implemented by :mod:`lifelong.incontext` (the projection/permutation task sampler
:class:`~lifelong.incontext.tasks.projection.ProjectionTasks`, :class:`~lifelong.incontext.models.PromptTransformer`
with paired tokens ``[A x_t ; onehot(y_{t-1})]``, the training loop).

Claim: a transformer meta-trained on a few tasks (random projections of the inputs plus label permutations of one
dataset) memorises them; meta-trained on fresh tasks every batch it learns to learn in context, so it classifies
unseen tasks better the more examples its prompt holds. Here: scikit-learn digits, 5-way tasks, prompts of 20
examples; a pool of 16 tasks versus fresh tasks every batch, both trained with the paper's biased distribution (a
fraction of each batch shares one fixed label permutation) and each arm's learning rate picked from one grid on
validation prompts. Controls (must not hold): the untrained model, the 16-task model and the fresh-task model with
its context labels randomised judged by the generalisation gates, the fresh-task model judged by the memorisation
gates. Protocol in ``specs/gpicl.toml``;
notes in docs/papers/gpicl.md. Run ``lifelong reproduce gpicl [--scale full]``.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.errors import ConfigError
from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec

REGIMES = ("fresh", "pool")


def image_splits(cfg: dict, seed: int) -> dict:
    """The digits images as ``{"train": (x, y), "val": (x, y), "test": (x, y)}``, flattened and standardised with
    the meta-training images' statistics.

    ``test`` is the library's digits test split (images no model sees in training); ``train`` / ``val`` split the
    training images at random with ``seed`` (``cfg["val_fraction"]`` for validation, used to pick the lr).
    """
    from lifelong.data import load_digits

    d = load_digits()
    x, y = d.x_train.flatten(1).float(), d.y_train.long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1000 + seed))
    n_val = int(round(cfg["val_fraction"] * len(y)))
    val, tr = perm[:n_val], perm[n_val:]
    mu, sd = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
    norm = lambda v: (v - mu) / sd  # noqa: E731
    return {
        "train": (norm(x[tr]), y[tr]),
        "val": (norm(x[val]), y[val]),
        "test": (norm(d.x_test.flatten(1).float()), d.y_test.long()),
    }


def sampler(cfg: dict, images: tuple, num_tasks: int | None, bias_fraction: float = 0.0, seed: int = 0):
    """A :class:`ProjectionTasks` over ``images`` with the spec's task settings: ``num_tasks=None`` draws a fresh
    task for every prompt, ``num_tasks=T`` the fixed pool of ``T`` tasks. The pool and the biased distribution's
    fixed permutation depend on ``seed`` only (``pool_seed = seed``, ``bias_seed = 12_345 + seed``), so one seed's
    pool is the same whatever the images, and each seed has its own pool and fixed permutation."""
    from lifelong.incontext.tasks.projection import ProjectionTasks

    x, y = images
    return ProjectionTasks(
        x,
        y,
        num_classes=10,
        n_points=cfg["n_points"],
        num_tasks=num_tasks,
        d_proj=cfg["d_proj"],
        ways=cfg["ways"],
        bias_fraction=bias_fraction,
        scale=cfg["scale"],
        standardise=False,
        pool_seed=seed,
        bias_seed=12_345 + seed,
    )


def regime_tasks(cfg: dict, regime: str) -> int | None:
    """Number of meta-training tasks of ``regime``: ``None`` (fresh every batch) or ``cfg["pool_tasks"]``."""
    if regime not in REGIMES:
        raise ConfigError(f"regime must be one of {REGIMES}, got {regime!r}")
    return None if regime == "fresh" else cfg["pool_tasks"]


def window_accuracy(acc: torch.Tensor, window) -> float:
    """Mean of per-position accuracies ``acc`` over 1-based positions ``window[0]..window[1]`` (inclusive)."""
    lo, hi = window
    return float(acc[lo - 1 : hi].mean())


def build_model(cfg: dict, seed: int):
    """The untrained causal transformer of the spec (paired tokens, ``ways`` labels), initialised with ``seed``."""
    from lifelong.incontext.models import PromptTransformer

    torch.manual_seed(seed)
    return PromptTransformer(
        cfg["d_proj"], cfg["ways"], "classes", tokens="paired", max_points=cfg["n_points"], **cfg["model"]
    )


def train_model(cfg: dict, images: dict, regime: str, seed: int, lr: float, bias_fraction: float, curve=None):
    """A transformer meta-trained ``cfg["steps"]`` steps at ``lr`` on the training images under ``regime``'s tasks
    (cross-entropy at every position). ``curve``: optional test prompts on which late-window accuracy is recorded
    every ``cfg["curve_every"]`` steps; returns ``(model, [(step, accuracy), ...])``."""
    from lifelong.incontext.train import TrainConfig, per_position_accuracy, train

    model = build_model(cfg, seed)
    t = cfg["train"]
    config = TrainConfig(
        steps=cfg["steps"],
        batch=t["batch"],
        lr=lr,
        schedule=t["schedule"],
        warmup_steps=int(t["warmup_fraction"] * cfg["steps"]),
        grad_clip=t["grad_clip"],
        eval_every=cfg["curve_every"] if curve is not None else 0,
        seed=seed,
    )
    eval_fn = None
    if curve is not None:

        def eval_fn(m, step):
            return {"late": window_accuracy(per_position_accuracy(m, curve), cfg["window_late"])}

    history = train(
        model,
        sampler(cfg, images["train"], regime_tasks(cfg, regime), bias_fraction, seed),
        config,
        eval_fn=eval_fn,
        progress=cfg["progress"],
    )
    model.eval()
    steps, values = history.curve("late")
    return model, [(s, round(v, 3)) for s, v in zip(steps, values)]


def pick_lr(cfg: dict, images: dict, regime: str, seed: int, bias_fraction: float | None = None, curve=None) -> tuple:
    """One model per value of ``cfg["lr_grid"]`` (the same grid for every arm), trained with ``bias_fraction``
    (default: the spec's) and kept by late-window accuracy on validation prompts of the regime's own task
    distribution (unbiased) over the validation images (generator seed ``10_000 + seed``). ``curve``: test prompts
    passed to :func:`train_model`. Returns ``(model, lr, {lr: validation accuracy}, the kept model's curve)``."""
    from lifelong.incontext.train import per_position_accuracy
    from lifelong.papers.common import pick_on_validation

    bias = cfg["bias_fraction"] if bias_fraction is None else bias_fraction
    val = sampler(cfg, images["val"], regime_tasks(cfg, regime), 0.0, seed).sample(
        cfg["val_prompts"], torch.Generator().manual_seed(10_000 + seed)
    )
    models, curves = {}, {}

    def score(lr: float) -> float:
        models[lr], curves[lr] = train_model(cfg, images, regime, seed, lr, bias, curve)
        return window_accuracy(per_position_accuracy(models[lr], val), cfg["window_late"])

    best, scores = pick_on_validation(cfg["lr_grid"], score)
    return models[best], best, scores, curves[best]


def make_test_prompts(cfg: dict, images: dict, seed: int) -> dict:
    """Test prompts over the held-out test images: ``"unseen"`` (fresh projections and permutations, generator
    seed ``20_000 + seed``) and ``"pool"`` (seed ``seed``'s 16 meta-training tasks with their own permutations,
    no bias, ``30_000 + seed``)."""
    n = cfg["test_prompts"]
    pool = sampler(cfg, images["test"], cfg["pool_tasks"], 0.0, seed)
    return {
        "unseen": sampler(cfg, images["test"], None, 0.0, seed).sample(n, torch.Generator().manual_seed(20_000 + seed)),
        "pool": pool.sample(n, torch.Generator().manual_seed(30_000 + seed)),
    }


def randomise_context_labels(cfg: dict, prompts, seed: int):
    """The mechanism control: ``prompts`` with the labels at positions ``1..window_late[0] - 1`` replaced by
    uniform random labels (generator seed ``40_000 + seed``); inputs and the later labels unchanged. A model that
    learns from its context must lose its late-window accuracy on these prompts."""
    from lifelong.incontext.prompts import Prompts

    k = cfg["window_late"][0] - 1
    ys = prompts.ys.clone()
    g = torch.Generator().manual_seed(40_000 + seed)
    ys[:, :k] = torch.randint(0, prompts.num_labels, (prompts.batch, k), generator=g)
    return Prompts(prompts.xs, ys, prompts.kind, prompts.num_labels, dict(prompts.extra))


def evaluate(cfg: dict, model, prompts: dict) -> dict:
    """Accuracy of ``model`` on the unseen and the pool tasks: late window, early window, position 1, curve."""
    from lifelong.incontext.train import per_position_accuracy

    out = {}
    for name, p in prompts.items():
        acc = per_position_accuracy(model, p)
        out[name] = {
            "late": window_accuracy(acc, cfg["window_late"]),
            "early": window_accuracy(acc, cfg["window_early"]),
            "first": float(acc[0]),
            "curve": [round(float(a), 3) for a in acc],
        }
    return out


def measure(cfg: dict) -> dict:
    """Per seed: both regimes at the lr picked on validation prompts, the untrained model, the fresh-task model on
    the same test prompts with its context labels randomised (the mechanism control), and (``no_bias_ablation``)
    the fresh-task model retrained without the biased distribution, its lr picked on its own validation prompts
    from the same grid. With ``no_bias_ablation`` both fresh-task arms record their unseen-task late accuracy
    during training (``curve_prompts`` test prompts, every ``curve_every`` steps)."""
    from lifelong.papers.common import log_row

    runs = []
    for seed in cfg["seeds"]:
        images = image_splits(cfg, seed)
        prompts = make_test_prompts(cfg, images, seed)
        curve = prompts["unseen"].select(slice(0, cfg["curve_prompts"])) if cfg["no_bias_ablation"] else None
        row: dict = {"seed": seed, "lr": {}, "val_acc": {}}
        for regime in REGIMES:
            model, row["lr"][regime], scores, c = pick_lr(
                cfg, images, regime, seed, curve=curve if regime == "fresh" else None
            )
            row["val_acc"][regime] = {f"{lr:g}": round(a, 4) for lr, a in scores.items()}
            row[regime] = evaluate(cfg, model, prompts)
            if regime == "fresh":
                row["fresh_curve"] = c
                shuffled = {"unseen": randomise_context_labels(cfg, prompts["unseen"], seed)}
                shuffled["pool"] = randomise_context_labels(cfg, prompts["pool"], seed)
                row["fresh_ctx_random"] = evaluate(cfg, model, shuffled)
        row["untrained"] = evaluate(cfg, build_model(cfg, seed), prompts)
        if cfg["no_bias_ablation"]:
            model, row["lr"]["fresh_no_bias"], scores, row["no_bias_curve"] = pick_lr(
                cfg, images, "fresh", seed, 0.0, curve
            )
            row["val_acc"]["fresh_no_bias"] = {f"{lr:g}": round(a, 4) for lr, a in scores.items()}
            row["fresh_no_bias"] = evaluate(cfg, model, prompts)
        log_row("gpicl", **row)
        runs.append(row)
    return {"runs": runs}


def verdict(runs: list[dict], cfg: dict, fresh: str | None = "fresh", pool: str | None = "pool") -> dict:
    """The gates, paired over seeds (95 % t-intervals, :func:`~lifelong.papers.common.paired`), for the arms named
    ``fresh`` (generalisation) and ``pool`` (memorisation); ``None`` skips that arm's gates.

    ``unseen_level``: unseen-task late-window accuracy - ``min_late``; ``unseen_gain``: late - (early +
    ``min_gain``); ``pool_train_level``: train-task late accuracy - ``min_train``; ``pool_unseen_low``:
    ``max_unseen`` - unseen-task late accuracy. Each held when its interval lies above 0 (one seed: the mean).
    """
    from lifelong.papers.common import paired

    out = {}
    if fresh is not None:
        late = [r[fresh]["unseen"]["late"] for r in runs]
        early = [r[fresh]["unseen"]["early"] for r in runs]
        out["unseen_level"] = paired(late, [cfg["min_late"]] * len(late), 0.0)
        out["unseen_gain"] = paired(late, [e + cfg["min_gain"] for e in early], 0.0)
    if pool is not None:
        train_acc = [r[pool]["pool"]["late"] for r in runs]
        unseen = [r[pool]["unseen"]["late"] for r in runs]
        out["pool_train_level"] = paired(train_acc, [cfg["min_train"]] * len(train_acc), 0.0)
        out["pool_unseen_low"] = paired([cfg["max_unseen"]] * len(unseen), unseen, 0.0)
    out["held"] = bool(out and all(v["held"] for v in out.values()))
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Run the protocol of ``specs/gpicl.toml`` at ``scale``."""
    return check(load_spec("gpicl", scale), scale)


def _mean(runs: list[dict], *keys) -> float:
    vals = []
    for r in runs:
        v = r
        for k in keys:
            v = v[k]
        vals.append(v)
    return round(float(np.mean(vals)), 4)


def check(cfg: dict, scale: str) -> Claim:
    """Measure, judge both regimes and the controls (which must not hold)."""
    from lifelong.papers.common import gates_measured, paired, paired_measured

    runs = measure(cfg)["runs"]
    v = verdict(runs, cfg)
    controls = {
        "untrained model, generalisation gates": verdict(runs, cfg, "untrained", None)["held"],
        "16-task model, generalisation gates": verdict(runs, cfg, "pool", None)["held"],
        "fresh-task model with context labels randomised, generalisation gates": verdict(
            runs, cfg, "fresh_ctx_random", None
        )["held"],
        "fresh-task model, memorisation gates": verdict(runs, cfg, None, "fresh")["held"],
    }
    (lo, hi), (elo, ehi) = cfg["window_late"], cfg["window_early"]
    late, early = f"acc@{lo}-{hi}", f"acc@{elo}-{ehi}"
    arms = ["fresh", "pool", "untrained", "fresh_ctx_random"] + (["fresh_no_bias"] if cfg["no_bias_ablation"] else [])
    m: dict = {}
    for arm in arms:
        for tasks in ("unseen", "pool"):
            m[f"{arm} on {tasks} tasks {late}"] = _mean(runs, arm, tasks, "late")
            m[f"{arm} on {tasks} tasks {early}"] = _mean(runs, arm, tasks, "early")
            m[f"{arm} on {tasks} tasks acc@1"] = _mean(runs, arm, tasks, "first")
        m[f"{arm} on unseen tasks {late} per seed"] = ", ".join(f"{r[arm]['unseen']['late']:.3f}" for r in runs)
        m[f"{arm} on pool tasks {late} per seed"] = ", ".join(f"{r[arm]['pool']['late']:.3f}" for r in runs)
    for regime in REGIMES + (("fresh_no_bias",) if cfg["no_bias_ablation"] else ()):
        m[f"{regime} lr picked per seed"] = ", ".join(f"{r['lr'][regime]:g}" for r in runs)
        m[f"{regime} validation {late} by lr per seed"] = "; ".join(
            ", ".join(f"lr {k}: {a:.3f}" for k, a in r["val_acc"][regime].items()) for r in runs
        )
    for arm in ("fresh", "pool"):
        m[f"{arm} on unseen tasks acc by position (seed {runs[0]['seed']})"] = " ".join(
            f"{a:.2f}" for a in runs[0][arm]["unseen"]["curve"]
        )
    if cfg["no_bias_ablation"]:
        gain = paired(
            [r["fresh"]["unseen"]["late"] for r in runs], [r["fresh_no_bias"]["unseen"]["late"] for r in runs]
        )
        m.update(paired_measured("biased minus unbiased fresh-task model, unseen late", gain))
        for r in runs:
            for arm, key in (("fresh", "fresh_curve"), ("fresh_no_bias", "no_bias_curve")):
                m[f"{arm} unseen {late} during training (seed {r['seed']})"] = " ".join(
                    f"{s}:{a:.2f}" for s, a in r[key]
                )
    m.update(gates_measured(v, controls))
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "with the paper's biased training distribution (a fraction of each batch on one fixed label "
            "permutation), a transformer meta-trained on few tasks memorises them, while meta-trained on many "
            "(fresh) tasks it learns to learn in context and generalises to unseen tasks"
        ),
        criterion=(
            f"scikit-learn digits (64-d, standardised), tasks = random projection to {cfg['d_proj']}-d "
            f"(A ~ N(0, 1/d)) + a random ordered subset of {cfg['ways']} of the 10 classes (a label permutation); "
            f"prompts of {cfg['n_points']} examples drawn without replacement, tokens [A x_t ; y_(t-1)]; causal "
            f"transformer {cfg['model']}, "
            f"CE at every position, {cfg['steps']} steps (batch {cfg['train']['batch']}, Adam, cosine), "
            f"{cfg['bias_fraction']:g} of each batch on one fixed label permutation (the paper's biased "
            f"distribution; pool and fixed permutation drawn per seed); {cfg['pool_tasks']} fixed tasks vs fresh "
            f"tasks every batch, lr per arm and seed from {list(cfg['lr_grid'])} by validation accuracy (validation "
            f"images, the regime's own unbiased tasks); "
            f"seeds {list(cfg['seeds'])}, {cfg['test_prompts']} test prompts on held-out images. Held when, paired "
            f"over seeds (95 % t-intervals): fresh-task model on unseen tasks {late} >= {cfg['min_late']:g} and "
            f">= {early} + {cfg['min_gain']:g}; {cfg['pool_tasks']}-task model {late} on its training tasks >= "
            f"{cfg['min_train']:g} and on unseen tasks <= {cfg['max_unseen']:g}. Controls that must not hold: the "
            f"untrained model, the {cfg['pool_tasks']}-task model and the fresh-task model with the labels at "
            f"positions 1-{cfg['window_late'][0] - 1} randomised at test judged by the generalisation "
            f"gates, the fresh-task model judged by the memorisation gates"
        ),
        measured=m,
        held=bool(v["held"] and not any(controls.values())),
        scale=scale,
        notes=(
            "Chance is 1/ways. Examples are drawn without replacement within a prompt. The no-bias ablation (fresh "
            f"tasks, batch {cfg['train']['batch']}, {cfg['steps']:,} steps, own lr) is reported, not gated. "
            "Departures and per-position curves: docs/papers/gpicl.md."
        ),
    )


PAPER = Paper(
    number=3,
    short_name="gpicl",
    title="General-Purpose In-Context Learning by Meta-Learning Transformers",
    category="in-context learning",
    status="claim checked",
    implemented_by=(
        "lifelong.incontext.tasks.projection",
        "lifelong.incontext.models",
        "lifelong.incontext.train",
    ),
    arxiv="2212.04458",
    reproduce=reproduce,
)
