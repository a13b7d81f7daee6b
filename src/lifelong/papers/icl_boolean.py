"""Paper 18: *Understanding In-Context Learning in Transformers and LLMs by Learning to Learn Discrete Functions*
(Bhattamishra, Patel, Blunsom & Kanade, arXiv 2310.03016). Implemented by :mod:`lifelong.incontext` (the Boolean
function sampler, :class:`~lifelong.incontext.models.PromptTransformer`, the elimination and nearest-neighbour
learners).

Claim: a transformer trained on prompts of random conjunctions learns them in context nearly as well as the
elimination algorithm (the optimal learner for the class), while on sparse parities (k = 2 of n = 10 variables) it
learns nothing in context: it scores no better than the no-context Bayes rule (which ignores the prompt and is
5.5 points above chance). Each arm's learning rate is picked from the spec's ``lr_grid`` on validation prompts.
Controls: the same model untrained, and the sparse-parity model tested on conjunctions, must not hold. Protocol
in ``specs/icl-boolean.toml``; notes in docs/papers/icl-boolean.md. Run ``lifelong reproduce icl-boolean
[--scale full]``.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.errors import ConfigError
from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def _sampler(cfg: dict, cls: str):
    from lifelong.incontext.tasks.boolean import BooleanFunctions

    return BooleanFunctions(cls, n_dims=cfg["n_dims"], n_points=cfg["n_points"])


def train_model(cfg: dict, cls: str, seed: int, steps: int, lr: float | None = None):
    """A causal transformer trained ``steps`` steps at learning rate ``lr`` on prompts of function class ``cls``
    (``steps = 0``: untrained)."""
    from lifelong.incontext.models import PromptTransformer
    from lifelong.incontext.train import TrainConfig, train

    torch.manual_seed(seed)
    model = PromptTransformer(cfg["n_dims"], 1, "binary", max_points=cfg["n_points"], **cfg["model"])
    if steps > 0:
        if lr is None:
            raise ConfigError("train_model needs lr when steps > 0 (measure() picks it from the spec's lr_grid)")
        t = cfg["train"]
        config = TrainConfig(
            steps=steps,
            batch=t["batch"],
            lr=lr,
            schedule=t["schedule"],
            warmup_steps=int(t["warmup_fraction"] * steps),
            grad_clip=t["grad_clip"],
            seed=seed,
        )
        train(model, _sampler(cfg, cls), config, progress=cfg["progress"])
    model.eval()
    return model


def accuracy_by_position(pred: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Sign accuracy of scores ``pred`` (``> 0`` means +1) at every position ``[n_points]``."""
    return (torch.where(pred > 0, 1.0, -1.0) == ys).float().mean(0)


def window_accuracy(cfg: dict, pred: torch.Tensor, ys: torch.Tensor) -> float:
    """Sign accuracy over the spec's window of 1-based positions ``window[0]..window[1]`` (inclusive)."""
    lo, hi = cfg["window"]
    return float(accuracy_by_position(pred, ys)[lo - 1 : hi].mean())


def pick_lr(cfg: dict, cls: str, seed: int) -> tuple:
    """Train one model per value of ``cfg["lr_grid"]`` on class ``cls`` and keep the one with the best window
    accuracy on validation prompts (generator seed ``10_000 + seed``; test prompts use ``20_000 + seed``).

    Returns ``(model, lr, {lr: validation accuracy})``. For sparse parity this picks the lr most favourable to
    learning the class, so "learns nothing in context" is not an artefact of a poor lr.
    """
    from lifelong.incontext.train import predict
    from lifelong.papers.common import pick_on_validation

    val = _sampler(cfg, cls).sample(cfg["val_prompts"], torch.Generator().manual_seed(10_000 + seed))
    models = {}

    def score(lr: float) -> float:
        models[lr] = train_model(cfg, cls, seed, cfg["steps"], lr)
        return window_accuracy(cfg, predict(models[lr], val), val.ys)

    best, scores = pick_on_validation(cfg["lr_grid"], score)
    return models[best], best, scores


def evaluate(cfg: dict, cls: str, seed: int, model) -> dict:
    """Accuracy of ``model`` and the reference learners on test prompts of ``cls`` (window and per position).

    References: nearest neighbour, majority label, the no-context sparse-parity Bayes rule ``parity_prior``
    (+1 iff ``(sum x)^2 < n``: what a model that ignores the prompt can reach on sparse parities), and per class
    the learner that shows the class is learnable from the prompt (elimination; the parity version-space vote).
    """
    from lifelong.incontext import references as R
    from lifelong.incontext.train import predict

    prompts = _sampler(cfg, cls).sample(cfg["test_prompts"], torch.Generator().manual_seed(20_000 + seed))
    lo, hi = cfg["window"]  # 1-based positions, inclusive
    preds = {
        "model": predict(model, prompts),
        "nearest_neighbour": R.nearest_neighbour(prompts),
        "majority_label": R.majority_label(prompts),
        "parity_prior": R.sparse_parity_prior(prompts, 2),
    }
    if cls == "conjunction":
        preds["elimination"] = R.elimination(prompts)
    if cls == "sparse_parity":  # the Bayes learner of the class: the task is learnable from these prompts
        preds["parity_vote"] = R.sparse_parity_vote(prompts, 2)
    out = {}
    for name, p in preds.items():
        acc = accuracy_by_position(p, prompts.ys)
        out[name] = float(acc[lo - 1 : hi].mean())
        out[f"{name}_curve"] = [round(float(a), 3) for a in acc]
    return out


def measure(cfg: dict) -> dict:
    """Train one model per function class and seed at the lr picked on validation prompts (:func:`pick_lr`);
    evaluate it on its class (and the parity model on conjunctions, the cross-class control); the untrained model
    is evaluated on both classes."""
    from lifelong.papers.common import log_row

    runs = []
    for seed in cfg["seeds"]:
        row: dict = {"seed": seed, "lr": {}, "val_acc": {}}
        models = {}
        for cls in ("conjunction", "sparse_parity"):
            models[cls], row["lr"][cls], scores = pick_lr(cfg, cls, seed)
            row["val_acc"][cls] = {f"{lr:g}": round(a, 4) for lr, a in scores.items()}
        untrained = train_model(cfg, "conjunction", seed, 0)
        for cls in ("conjunction", "sparse_parity"):
            row[cls] = evaluate(cfg, cls, seed, models[cls])
            row[f"untrained_{cls}"] = evaluate(cfg, cls, seed, untrained)
        row["parity_model_on_conjunction"] = evaluate(cfg, "conjunction", seed, models["sparse_parity"])
        log_row("icl-boolean", **row)
        runs.append(row)
    return {"runs": runs}


def within(p: dict, margin: float) -> bool:
    """Equivalence of a :func:`~lifelong.papers.common.paired` difference to 0: its 95 % interval inside
    ``[-margin, +margin]`` (one seed: the mean alone)."""
    if p["n"] < 2:
        return bool(abs(p["mean"]) <= margin)
    return bool(-margin <= p["lo"] and p["hi"] <= margin)


def verdict(runs: list[dict], cfg: dict, conj: str = "conjunction", parity: str = "sparse_parity") -> dict:
    """The gates (per-seed accuracies over the window, 95 % t-intervals) for the arms ``conj`` and ``parity``.

    ``conjunction_level``: accuracy - ``min_conjunction`` with its interval above 0; ``vs_elimination``: accuracy +
    ``max_gap`` - elimination's accuracy with its interval above 0; ``parity_level``: ``max_parity`` - accuracy
    with its interval above 0; ``parity_no_icl_gain``: the in-context gain (accuracy - the no-context Bayes rule's
    accuracy on the same prompts) with its interval inside ``+-gain_margin``. ``parity=None`` judges the
    conjunction gates only.
    """
    from lifelong.papers.common import paired

    acc = [r[conj]["model"] for r in runs]
    out = {
        "conjunction_level": paired(acc, [cfg["min_conjunction"]] * len(acc), 0.0),
        "vs_elimination": paired([a + cfg["max_gap"] for a in acc], [r[conj]["elimination"] for r in runs], 0.0),
    }
    if parity is not None:
        par = [r[parity]["model"] for r in runs]
        out["parity_level"] = paired([cfg["max_parity"]] * len(par), par, 0.0)
        gain = paired(par, [r[parity]["parity_prior"] for r in runs], 0.0)
        out["parity_no_icl_gain"] = {**gain, "margin": cfg["gain_margin"], "held": within(gain, cfg["gain_margin"])}
    out["held"] = bool(all(v["held"] for v in out.values()))
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Run the protocol of ``specs/icl-boolean.toml`` at ``scale``."""
    return check(load_spec("icl-boolean", scale), scale)


def check(cfg: dict, scale: str) -> Claim:
    """Measure, judge the trained models and the controls (which must not hold)."""
    from lifelong.papers.common import gates_measured

    runs = measure(cfg)["runs"]
    v = verdict(runs, cfg)
    controls = {
        "untrained": verdict(runs, cfg, "untrained_conjunction", "untrained_sparse_parity")["held"],
        "parity model on conjunctions": verdict(runs, cfg, "parity_model_on_conjunction", None)["held"],
    }
    lo, hi = cfg["window"]
    m: dict = {}
    arms = ("conjunction", "sparse_parity", "untrained_conjunction", "untrained_sparse_parity")
    for arm in (*arms, "parity_model_on_conjunction"):
        for name in ("model", "elimination", "parity_vote", "parity_prior", "nearest_neighbour", "majority_label"):
            if name in runs[0][arm] and (name == "model" or not arm.startswith(("untrained", "parity_model"))):
                vals = [r[arm][name] for r in runs]
                m[f"{arm} {name} acc@{lo}-{hi}"] = round(float(np.mean(vals)), 4)
        m[f"{arm} model acc@{lo}-{hi} per seed"] = ", ".join(f"{r[arm]['model']:.3f}" for r in runs)
        m[f"{arm} model acc@1"] = round(float(np.mean([r[arm]["model_curve"][0] for r in runs])), 4)
    for cls in ("conjunction", "sparse_parity"):
        m[f"{cls} lr picked per seed"] = ", ".join(f"{r['lr'][cls]:g}" for r in runs)
        m[f"{cls} validation acc@{lo}-{hi} by lr per seed"] = "; ".join(
            ", ".join(f"lr {k}: {a:.3f}" for k, a in r["val_acc"][cls].items()) for r in runs
        )
    for name in ("model", "elimination"):
        curve = runs[0]["conjunction"][f"{name}_curve"]
        m[f"conjunction {name} acc by position (seed 0)"] = " ".join(f"{a:.2f}" for a in curve)
    m.update(gates_measured(v, controls))
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "transformers learn simple Boolean classes in context near-optimally (conjunctions, close to the "
            "elimination algorithm) but not complex ones (on sparse parities the model gains nothing from the "
            "prompt over the no-context Bayes rule)"
        ),
        criterion=(
            f"n={cfg['n_dims']} variables, prompts of {cfg['n_points']} examples (the official input distribution: "
            f"literals +/-/absent 0.15/0.15/0.7, each input forced to satisfy the conjunction with p 0.3; sparse "
            f"parity of k=2 variables on uniform inputs); causal transformer {cfg['model']} trained "
            f"{cfg['steps']} steps per class (batch {cfg['train']['batch']}, Adam, BCE at every position; lr "
            f"picked per class and seed from {list(cfg['lr_grid'])} by window accuracy on {cfg['val_prompts']} "
            f"validation prompts); seeds {list(cfg['seeds'])}, {cfg['test_prompts']} test prompts each; accuracy over "
            f"positions {lo}-{hi}. Held when, paired over seeds (95 % t-intervals): conjunction accuracy >= "
            f"{cfg['min_conjunction']:g}, >= elimination - {cfg['max_gap']:g}, sparse-parity accuracy <= "
            f"{cfg['max_parity']:g} and its in-context gain over the no-context Bayes rule (+1 iff (sum x)^2 < n) "
            f"with its interval inside +-{cfg['gain_margin']:g}; the untrained model and the sparse-parity model "
            f"tested on conjunctions, judged by the same gates, must not hold"
        ),
        measured=m,
        held=bool(v["held"] and not any(controls.values())),
        scale=scale,
        notes="Departures and the per-position curves: docs/papers/icl-boolean.md.",
    )


PAPER = Paper(
    number=18,
    short_name="icl-boolean",
    title="Understanding In-Context Learning in Transformers and LLMs by Learning to Learn Discrete Functions",
    category="in-context learning",
    status="claim checked",
    implemented_by=(
        "lifelong.incontext.tasks.boolean",
        "lifelong.incontext.models",
        "lifelong.incontext.references",
        "lifelong.incontext.train",
    ),
    arxiv="2310.03016",
    reproduce=reproduce,
)
