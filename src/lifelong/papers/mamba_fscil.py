"""Paper 50: *Mamba-FSCIL: Dynamic Adaptation with Selective State Space Model for Few-Shot
Class-Incremental Learning* (Li et al., 2024; arXiv 2407.06136).

Claim: Mamba-FSCIL (:mod:`lifelong.methods.mamba_fscil`) beats prototypes on the same base-trained
backbone in the last session by the catalogue's margin, with a small base-class drop. As in the paper,
a backbone (here a small MLP over the frozen encoder's features) is trained on the base session and
frozen; the prototype baseline (``simplecil``) and every Mamba-FSCIL arm run on its features. Each
Mamba-FSCIL arm's incremental learning rate is picked on a validation split; the verdict is paired
per seed. Protocol in ``specs/mamba-fscil.toml``. Run ``lifelong reproduce mamba-fscil [--scale full]``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec

# settings of the base session: arms that agree on these share one trained static branch
_BASE_KEYS = (
    "tokens",
    "mid_channels",
    "d_state",
    "d_conv",
    "base_epochs",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "weight_decay",
    "warmup_steps",
)


def train_backbone(x: torch.Tensor, y: torch.Tensor, cfg: dict, seed: int) -> torch.nn.Module:
    """An MLP (``cfg["hidden"]`` then ``cfg["dim"]`` ReLU units) trained with cross-entropy on ``(x, y)``.

    The base-session backbone: a linear head over the base classes is trained with it (AdamW,
    ``cfg["epochs"]`` epochs of batch ``cfg["batch_size"]`` at ``cfg["lr"]``) and dropped after.
    """
    from lifelong.encoders.mlp import MLP

    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP(tuple(x.shape[1:]), (*cfg["hidden"], cfg["dim"]))
        head = torch.nn.Linear(cfg["dim"], int(y.max()) + 1)
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 5e-4))
    n, bs = len(y), cfg["batch_size"]
    for _ in range(cfg["epochs"]):
        order = torch.randperm(n, generator=g)
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            loss = torch.nn.functional.cross_entropy(head(net(x[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _embed(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Backbone features of ``x``, L2-normalised (the scale of the encoder's sentence embeddings: the ETF
    dot-regression gradient on the dynamic branch falls as 1/||z||, the suppression's does not)."""
    with torch.no_grad():
        f = torch.cat([net(x[i : i + 2048]) for i in range(0, len(x), 2048)])
    return torch.nn.functional.normalize(f, dim=1)


def _stream(data, cfg: dict, seed: int):
    from lifelong.papers.common import fscil_stream_of

    return fscil_stream_of(data, cfg, seed)


def streams(settings: dict, seed: int, validation: bool = False) -> dict:
    """``{"encoder": stream on the frozen encoder's features, "backbone": the same stream on the features of
    a backbone trained on its base session}``.

    ``validation=True`` holds out ``val_fraction`` of every class's training examples and uses them as
    the test split (the test split itself is never read): the streams that learning rates are picked on.
    """
    from lifelong.data.dataset import stratified_split
    from lifelong.papers.common import load_data

    cfg = settings["stream"]
    data = load_data(cfg["data"])
    if validation:
        tr, va = stratified_split(data.y_train.numpy(), settings["val_fraction"], 1000 + seed)
        data = dataclasses.replace(
            data,
            name=f"{data.name}-val",
            x_train=data.x_train[tr],
            y_train=data.y_train[tr],
            x_test=data.x_train[va],
            y_test=data.y_train[va],
            domains_train=None,
            domains_test=None,
        )
    enc = _stream(data, cfg, seed)
    x0, y0 = enc[0].train_tensors()
    net = train_backbone(x0.reshape(len(x0), -1).float(), y0, settings["backbone"], seed)
    feats = dataclasses.replace(
        data,
        name=f"{data.name}-base-backbone",
        x_train=_embed(net, data.x_train.reshape(len(data.x_train), -1).float()),
        x_test=_embed(net, data.x_test.reshape(len(data.x_test), -1).float()),
    )
    return {"encoder": enc, "backbone": _stream(feats, cfg, seed)}


def _measure(learner, stream, start: int = 0) -> dict:
    """Learn ``stream[start:]``; last-session accuracy over all classes, base accuracy, novel accuracy."""
    from lifelong.evaluation.loop import accuracy

    tests = [e.test_tensors() for e in stream]
    K = stream.num_classes
    base_first = None
    for i in range(start, len(stream)):
        learner.learn(stream[i])
        if i == 0:
            base_first = accuracy(learner, *tests[0], None, K)
    last = [accuracy(learner, x, y, None, K) for x, y in tests]
    n = np.array([len(y) for _, y in tests], dtype=float)
    return {
        "last": float((np.array(last) * n).sum() / n.sum()),
        "base_first": base_first,
        "base_last": float(last[0]),
        "novel_last": float(np.mean(last[1:])) if len(last) > 1 else float("nan"),
    }


def run_arms(arms: dict, streams_: dict, seed: int) -> dict:
    """Each arm ``name -> (method, config, features)`` on ``streams_[features]``; Mamba-FSCIL arms that agree
    on the base-session settings share one trained static branch (same seed, so the same as separate runs)."""
    from lifelong.methods import make_learner

    out: dict = {}
    based: dict = {}
    for name, (method, cfg, feats) in arms.items():
        stream = streams_[feats]
        if method != "mamba-fscil":
            out[name] = _measure(make_learner(method, cfg, seed=seed), stream)
            continue
        learner = make_learner(method, cfg, seed=seed)
        key = (feats, tuple(repr(getattr(learner.config, k)) for k in _BASE_KEYS))
        if key not in based:
            from lifelong.evaluation.loop import accuracy

            first = make_learner(method, cfg, seed=seed)
            first.learn(stream[0])
            x0, y0 = stream[0].test_tensors()
            based[key] = (first.state_dict(), accuracy(first, x0, y0, None, stream.num_classes))
        state, base_first = based[key]
        learner.load_state_dict(state)
        out[name] = {**_measure(learner, stream, start=1), "base_first": base_first}
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Mamba-FSCIL vs prototypes on the same base-trained backbone at ``scale`` (``specs/mamba-fscil.toml``)."""
    return check(load_spec("mamba-fscil", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Mamba-FSCIL vs the prototype baseline on an FSCIL stream with ``settings``."""
    from lifelong.papers.common import fscil_label, log_row, paired, paired_measured, pick_on_validation

    seeds, margin, max_drop = settings["seeds"], settings["margin"], settings["max_base_drop"]
    base, grid = settings["base"], list(settings["inc_lr_grid"])
    arms = {}
    for k, v in settings["variants"].items():
        cfg = {**base, **v["config"]} if v["method"] == "mamba-fscil" else dict(v["config"])
        arms[k] = (v["method"], cfg, v.get("features", "backbone"))
    tuned = [k for k, a in arms.items() if a[0] == "mamba-fscil"]

    # each Mamba-FSCIL arm's incremental lr: the grid value with the best last-session accuracy on the
    # validation streams of the first seed (the prototype arms have no learning rate)
    tune_seed = seeds[0]
    val = streams(settings, tune_seed, validation=True)
    val_arms = {f"{k}@{lr:g}": (arms[k][0], {**arms[k][1], "inc_lr": lr}, arms[k][2]) for k in tuned for lr in grid}
    val_res = run_arms(val_arms, val, tune_seed)
    chosen, val_scores = {}, {}
    for k in tuned:
        chosen[k], scores = pick_on_validation(grid, lambda lr, k=k: val_res[f"{k}@{lr:g}"]["last"])
        val_scores[k] = {f"{lr:g}": round(s, 4) for lr, s in scores.items()}
        arms[k] = (arms[k][0], {**arms[k][1], "inc_lr": chosen[k]}, arms[k][2])

    per = {k: [] for k in arms}
    for seed in seeds:
        res = run_arms(arms, streams(settings, seed), seed)
        for k, r in res.items():
            per[k].append(r)
        log_row("mamba-fscil", scale=scale, seed=seed, **{k: r["last"] for k, r in res.items()})
    col = {k: {m: np.array([r[m] for r in v]) for m in v[0]} for k, v in per.items()}

    measured: dict = {"seeds": len(seeds)}
    for k, m in col.items():
        measured[f"{k}/last_session_accuracy"] = round(float(m["last"].mean()), 4)
        measured[f"{k}/base_first"] = round(float(m["base_first"].mean()), 4)
        measured[f"{k}/base_drop"] = round(float((m["base_first"] - m["base_last"]).mean()), 4)
        measured[f"{k}/novel_last"] = round(float(m["novel_last"].mean()), 4)
    measured["per_seed_last"] = {k: [round(float(v), 4) for v in m["last"]] for k, m in col.items()}
    measured["inc_lr_chosen"] = {k: chosen[k] for k in tuned}
    measured["validation_last_by_inc_lr"] = val_scores
    gain = paired(col["mamba-fscil"]["last"], col["baseline"]["last"], margin)
    measured.update(paired_measured("gain_vs_prototypes", gain))
    drop = float((col["mamba-fscil"]["base_first"] - col["mamba-fscil"]["base_last"]).mean())
    for k in settings.get("ablations", []):  # the paper's components: mamba-fscil minus the arm without it
        measured.update(paired_measured(f"mamba-fscil_minus_{k}", paired(col["mamba-fscil"]["last"], col[k]["last"])))
    held = bool(gain["held"] and drop <= max_drop)
    measured["held_gain"], measured["held_drop"] = bool(gain["held"]), bool(drop <= max_drop)
    bb = settings["backbone"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "a dual selective-SSM projector (static base branch + dynamic branch trained per session with "
            "suppression and separation losses) with an ETF head on a base-trained backbone beats "
            "prototypes on the same backbone in the last session while keeping base classes"
        ),
        criterion=(
            f"on {fscil_label(settings['stream'])} ({len(seeds)} seed(s)), both on the same MLP backbone "
            f"trained on the base session: last-session accuracy - prototype baseline >= {margin * 100:.0f} "
            f"points (paired per seed, 95 % interval above 0 with >= 2 seeds) and mean base-class drop "
            f"(base -> last session) <= {max_drop * 100:.0f} points; inc_lr per arm picked on a "
            f"{settings['val_fraction']:g} validation split from {grid}"
        ),
        measured=measured,
        held=held,
        scale=scale,
        notes=(
            f"backbone = MLP {list(bb['hidden'])} -> {bb['dim']} (ReLU, output L2-normalised) over the frozen "
            "encoder's features, "
            f"trained with cross-entropy on the base session ({bb['epochs']} epochs, AdamW lr {bb['lr']:g}) and "
            "frozen (the paper trains a ResNet jointly with the neck); the scanned positions are the backbone "
            "feature cut into `tokens` chunks, scanned both ways, and the separation loss averages dt, B, C "
            "over both directions; pure-torch selective scan, state size 16; AdamW instead of the official SGD; "
            "suppression weight 10 instead of 100, on the branch output (official: on the gate); base classes "
            "replayed as 5 random features per class; `baseline-encoder` = prototypes on the encoder's features"
        ),
    )


PAPER = Paper(
    number=50,
    short_name="mamba-fscil",
    title="Mamba-FSCIL: Dynamic Adaptation with Selective State Space Model for Few-Shot Class-Incremental Learning",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.mamba_fscil", "lifelong.layers.selective_scan"),
    arxiv="2407.06136",
    reproduce=reproduce,
)
