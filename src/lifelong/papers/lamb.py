"""Paper 33: *Large Batch Optimization for Deep Learning: Training BERT in 76 minutes* (You et al., ICLR 2020,
arXiv:1904.00962). Implemented by :class:`lifelong.optim.lamb.Lamb` (registered as ``"lamb"``) with warm-up +
linear decay from :func:`lifelong.optim.schedules.build_schedule`.

:func:`check` verifies one LAMB step against references (torch-optimizer's ``Lamb`` when importable,
and a float64 re-statement of the TF-Addons update) and compares large-batch LAMB with small- and
large-batch baselines on a teacher-student task standing in for BERT; protocol in ``specs/lamb.toml``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import torch
import torch.nn.functional as F

from lifelong.optim.lamb import Lamb, lamb_param_groups
from lifelong.optim.schedules import build_schedule
from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def _student(seed: int, dim: int = 64, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(dim, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, classes),
    )


def _optimizer(name: str, model: torch.nn.Module, lr: float, s: dict) -> torch.optim.Optimizer:
    groups = lamb_param_groups(model, weight_decay=s["weight_decay"])
    if name == "lamb":
        if not s["layer_adaptation"]:  # ablation: trust ratio fixed at 1 (LAMB without it is AdamW)
            for g in groups:
                g["adapt"] = False
        return Lamb(groups, lr=lr, eps=s["eps"])
    for g in groups:
        g.pop("adapt")
    if name == "adamw":
        # LAMB's eps (TF-Addons default 1e-6), so that AdamW@large is exactly LAMB without its trust ratio
        return torch.optim.AdamW(groups, lr=lr, eps=s["eps"])
    return torch.optim.SGD(groups, lr=lr, momentum=s["momentum"])


def _train(name: str, lr: float, batch: int, seed: int, x, y, x_eval, y_eval, s: dict) -> float:
    """Train one student for ``s["epochs"]``; return accuracy (%) on ``(x_eval, y_eval)``."""
    epochs = s["epochs"]
    model = _student(seed, s["teacher"]["dim"], s["teacher"]["classes"])
    opt = _optimizer(name, model, lr, s)
    steps_per_epoch = x.shape[0] // batch
    total = steps_per_epoch * epochs
    sched = build_schedule("linear", opt, total, warmup_steps=max(1, total // s["warmup_divisor"]))
    gen = torch.Generator().manual_seed(seed + 1000)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return 100.0 * (model(x_eval).argmax(1) == y_eval).float().mean().item()


def _validation_score(name: str, lr: float, batch: int, seed: int, x, y, s: dict) -> float:
    """Accuracy (%) on the last ``1 / val_divisor`` of the training set after training on the rest."""
    n_val = x.shape[0] // s["val_divisor"]
    return _train(name, lr, batch, seed, x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:], s)


# --- parity -----------------------------------------------------------------------------------


def reference_lamb_tf(w, grads, *, lr, b1, b2, eps, wd, bias_correction=True, clip=None):
    """Float64 re-statement of the TF-Addons LAMB update (You et al., arXiv:1904.00962), step by step.

    Independent of :class:`lifelong.optim.lamb.Lamb`, for checking it. ``w`` is the start
    weight, ``grads`` the gradient of each step; ``bias_correction`` divides the moments by
    ``1 - beta^t``; ``clip`` caps the weight norm in the trust ratio (None: no cap).
    """
    w = w.double().clone()
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g.double()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh, vh = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
        r = mh / (vh.sqrt() + eps) + wd * w
        wn = w.norm()
        if clip is not None:
            wn = min(wn, torch.tensor(clip, dtype=torch.float64))
        rn = r.norm()
        trust = wn / rn if (wn > 0 and rn > 0) else 1.0
        w = w - lr * trust * r
    return w


def load_torch_optimizer_lamb():
    """torch-optimizer's ``Lamb`` class, or ``None`` when the package is not installed.

    torch-optimizer's package ``__init__`` imports ``pytorch_ranger``; when only
    torch-optimizer itself is installed, its ``lamb.py`` is loaded on its own.
    """
    try:
        import torch_optimizer

        return torch_optimizer.Lamb
    except ImportError:
        pass
    spec = importlib.util.find_spec("torch_optimizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    alias = "_lifelong_torch_optimizer_ref"
    if alias not in sys.modules:
        pkg = types.ModuleType(alias)
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules[alias] = pkg
    try:
        return importlib.import_module(f"{alias}.lamb").Lamb
    except ImportError:
        return None


def parity_errors(
    steps: int = 3,
    seed: int = 33,
    lr: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    wd: float = 0.01,
    clip: float = 10.0,
) -> dict[str, float]:
    """Max abs difference between :class:`Lamb` and the references after ``steps`` steps on a random 7x5 weight."""
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    grads = [torch.randn(7, 5, generator=g, dtype=torch.float64) * 0.1 for _ in range(steps)]
    hp = dict(lr=lr, b1=b1, b2=b2, eps=eps, wd=wd)

    def ours(**kw):
        p = torch.nn.Parameter(w0.clone())
        opt = Lamb([p], lr=hp["lr"], betas=(hp["b1"], hp["b2"]), eps=hp["eps"], weight_decay=hp["wd"], **kw)
        for gr in grads:
            p.grad = gr.clone()
            opt.step()
        return p.detach()

    out = {"tf_addons_reference_float64": float((ours() - reference_lamb_tf(w0, grads, **hp)).abs().max())}
    ref_cls = load_torch_optimizer_lamb()
    if ref_cls is not None:
        p = torch.nn.Parameter(w0.clone())
        ref = ref_cls(
            [p],
            lr=hp["lr"],
            betas=(hp["b1"], hp["b2"]),
            eps=hp["eps"],
            weight_decay=hp["wd"],
            clamp_value=clip,
            debias=False,
        )
        for gr in grads:
            p.grad = gr.clone()
            ref.step()
        mine = ours(bias_correction=False, trust_clip=clip)
        out["torch_optimizer"] = float((mine - p.detach()).abs().max())
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Check LAMB's step and its large-batch accuracy at ``scale`` (settings from ``specs/lamb.toml``)."""
    return check(load_spec("lamb", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Check LAMB's step against references and its large-batch accuracy, on one intra-op thread."""
    from lifelong.runtime import single_thread

    with single_thread():
        return _check(settings, scale)


#: The arms: (optimizer, small or large batch).
ARMS = {
    "sgd_small": ("sgd", False),
    "adamw_small": ("adamw", False),
    "adamw_large": ("adamw", True),
    "lamb_large": ("lamb", True),
}


def _check(s: dict, scale: str) -> Claim:
    from lifelong.papers.common import log_row, paired, paired_measured, pick_on_validation, teacher_student_data

    tol, margin, gap = s["parity_tolerance"], s["margin"], s["adamw_gap"]
    parity = parity_errors(**s["parity"])
    parity_ok = all(v <= tol for v in parity.values())
    big = s["batch"] * s["multiple"]
    batch = {False: s["batch"], True: big}
    # Every arm's lr from the same grid, on a validation split of the first seed's training data.
    tune_seed = s["seeds"][0]
    x, y, _, _ = teacher_student_data(s["n_train"], s["n_test"], seed=tune_seed, **s["teacher"])
    lrs, val = {}, {}
    for arm, (opt, large) in ARMS.items():
        lrs[arm], scores = pick_on_validation(
            s["lr_grid"], lambda lr, o=opt, b=batch[large]: _validation_score(o, lr, b, tune_seed, x, y, s)
        )
        val[arm] = {f"{k:g}": round(v, 2) for k, v in scores.items()}
    # The small-batch baseline is the small-batch arm with the better validation accuracy.
    small = max(("sgd_small", "adamw_small"), key=lambda a: (val[a][f"{lrs[a]:g}"], a == "adamw_small"))
    acc: dict[str, list[float]] = {k: [] for k in ARMS}
    for seed in s["seeds"]:
        x, y, xt, yt = teacher_student_data(s["n_train"], s["n_test"], seed=seed, **s["teacher"])
        for arm, (opt, large) in ARMS.items():
            acc[arm].append(_train(opt, lrs[arm], batch[large], seed, x, y, xt, yt, s))
            log_row("lamb", scale=scale, seed=seed, arm=arm, lr=lrs[arm], acc=acc[arm][-1])
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    # Non-inferiority to the small batch: the 95 % interval of LAMB - small lies above -margin.
    p_small = paired(acc["lamb_large"], acc[small], -margin)
    lamb_close = p_small["n"] >= 2 and p_small["lo"] > -margin or p_small["n"] < 2 and p_small["mean"] >= -margin
    # Superiority over AdamW at the same large batch (LAMB without its trust ratio): >= gap, interval above 0.
    p_adam = paired(acc["lamb_large"], acc["adamw_large"], gap)
    measured = {
        **{f"parity_max_abs_err_{k}": v for k, v in parity.items()},
        "small_batch": s["batch"],
        "large_batch": big,
        "epochs": s["epochs"],
        "seeds": len(s["seeds"]),
        "layer_adaptation": s["layer_adaptation"],
        **{f"lr_{k}": v for k, v in lrs.items()},
        **{f"acc_{k}": round(v, 2) for k, v in mean.items()},
        "small_batch_baseline": small,
        **paired_measured(f"lamb_large_minus_{small}", p_small, 2),
        **paired_measured("lamb_large_minus_adamw_large", p_adam, 2),
        f"lamb_noninferior_within_{margin:g}": bool(lamb_close),
        f"lamb_beats_adamw_large_by_{gap:g}": p_adam["held"],
        "validation_acc_by_lr": val,
    }
    return Claim(
        paper="lamb",
        statement="LAMB trains at a large batch without the accuracy loss that Adam(W) suffers there; "
        "its step is the published LAMB update",
        criterion=f"one LAMB step matches the reference(s) to {tol:g}; every arm at its own lr from one grid "
        f"(validation split); per seed paired held-out accuracy: LAMB@{big} - best small-batch arm@{s['batch']} "
        f"has its 95 % interval above -{margin:g} points, and LAMB@{big} - AdamW@{big} >= {gap:g} points with "
        "its interval above 0",
        measured=measured,
        held=bool(parity_ok and lamb_close and p_adam["held"]),
        scale="full" if scale == "full" else "quick",
        notes="Toy stand-in for BERT: teacher-student MLP task, accuracy in %. torch-optimizer parity uses its "
        "debias=False mode (its debias=True applies bias correction outside the trust ratio, unlike "
        f"TF-Addons). Every arm's lr from {list(s['lr_grid'])} on a validation split (last 1/{s['val_divisor']}) "
        f"of seed {tune_seed}'s training data; the best small-batch arm is the one with the better validation "
        "accuracy. AdamW@large uses LAMB's parameter groups and schedule: it is LAMB without the trust ratio "
        f"(the ablation) with LAMB's eps ({s['eps']:g}); biases are excluded from weight decay and layer "
        "adaptation (the BERT recipe; TF-Addons' default excludes nothing).",
    )


PAPER = Paper(
    number=33,
    short_name="lamb",
    title="Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
    category="optimizer",
    status="claim checked",
    implemented_by=("lifelong.optim.lamb", "lifelong.optim.schedules"),
    arxiv="1904.00962",
    reproduce=reproduce,
)
