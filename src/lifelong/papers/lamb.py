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
import math
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
        return Lamb(groups, lr=lr)
    for g in groups:
        g.pop("adapt")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
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


def _select_lr(name: str, grid, batch: int, seed: int, x, y, s: dict) -> float:
    """Pick the lr with the best accuracy on the last ``1 / val_divisor`` of the training set."""
    n_val = x.shape[0] // s["val_divisor"]
    xt, yt, xv, yv = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    scores = [(_train(name, lr, batch, seed, xt, yt, xv, yv, s), -lr) for lr in grid]
    return -max(scores)[1]


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


def _check(s: dict, scale: str) -> Claim:
    from lifelong.papers.common import teacher_student_data

    tol, margin, gap = s["parity_tolerance"], s["margin"], s["adamw_gap"]
    parity = parity_errors(**s["parity"])
    parity_ok = all(v <= tol for v in parity.values())
    big = s["batch"] * s["multiple"]
    scaled_adam_lr = s["small_lr"]["adamw"] * math.sqrt(s["multiple"])
    acc: dict[str, list[float]] = {k: [] for k in ("sgd_small", "adamw_small", "adamw_large", "lamb_large")}
    lamb_lr = adamw_tuned_lr = None
    adamw_tuned = None
    for seed in s["seeds"]:
        x, y, xt, yt = teacher_student_data(s["n_train"], s["n_test"], seed=seed, **s["teacher"])
        if lamb_lr is None:
            lamb_lr = _select_lr("lamb", s["lamb_grid"], big, seed, x, y, s)
            if s["tune_adamw_large"]:  # extra information only
                adamw_tuned_lr = _select_lr("adamw", s["adamw_large_grid"], big, seed, x, y, s)
                adamw_tuned = _train("adamw", adamw_tuned_lr, big, seed, x, y, xt, yt, s)
        acc["sgd_small"].append(_train("sgd", s["small_lr"]["sgd"], s["batch"], seed, x, y, xt, yt, s))
        acc["adamw_small"].append(_train("adamw", s["small_lr"]["adamw"], s["batch"], seed, x, y, xt, yt, s))
        acc["adamw_large"].append(_train("adamw", scaled_adam_lr, big, seed, x, y, xt, yt, s))
        acc["lamb_large"].append(_train("lamb", lamb_lr, big, seed, x, y, xt, yt, s))
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    best_small = max(mean["sgd_small"], mean["adamw_small"])
    lamb_close = mean["lamb_large"] >= best_small - margin
    adam_behind = mean["adamw_large"] < mean["lamb_large"]
    measured = {
        **{f"parity_max_abs_err_{k}": v for k, v in parity.items()},
        "small_batch": s["batch"],
        "large_batch": big,
        "epochs": s["epochs"],
        "seeds": len(s["seeds"]),
        "acc_sgd_small": round(mean["sgd_small"], 2),
        "acc_adamw_small": round(mean["adamw_small"], 2),
        "acc_adamw_large_scaled_lr": round(mean["adamw_large"], 2),
        "acc_lamb_large": round(mean["lamb_large"], 2),
        "lamb_lr_selected": lamb_lr,
        "adamw_large_lr_scaled": scaled_adam_lr,
        "acc_adamw_large_val_selected_lr": None if adamw_tuned is None else round(adamw_tuned, 2),
        "adamw_large_lr_selected": adamw_tuned_lr,
        "lamb_gap_to_best_small": round(mean["lamb_large"] - best_small, 2),
        "adamw_large_gap_to_best_small": round(mean["adamw_large"] - best_small, 2),
        f"lamb_within_{margin:g}": lamb_close,
        "adamw_large_behind_lamb": adam_behind,
        f"adamw_margin_ge_{gap:g}pt": mean["lamb_large"] - mean["adamw_large"] >= gap,
    }
    return Claim(
        paper="lamb",
        statement="LAMB trains at a large batch without the accuracy loss that Adam(W) suffers there; "
        "its step is the published LAMB update",
        criterion=f"one LAMB step matches the reference(s) to {tol:g}; mean held-out accuracy of "
        f"LAMB@{big} >= best of SGD/AdamW@{s['batch']} - {margin:g} points, and AdamW@{big} with "
        f"sqrt-scaled lr below LAMB@{big}",
        measured=measured,
        held=bool(parity_ok and lamb_close and adam_behind),
        scale="full" if scale == "full" else "quick",
        notes="Toy stand-in for BERT: teacher-student MLP task, accuracy in %. torch-optimizer parity uses its "
        "debias=False mode (its debias=True applies bias correction outside the trust ratio, unlike "
        "TF-Addons). LAMB lr (and, for information, AdamW@large lr) chosen on a validation split of the first "
        "seed's training data; small-batch lrs are standard defaults.",
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
