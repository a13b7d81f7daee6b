"""Paper 10: *AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient Methods* (Lau, Liu, Kolar,
arXiv:2402.11215; official code ``timlautk/AdAdaGrad``). Implemented by :mod:`lifelong.optim.adadagrad`
(:class:`~lifelong.optim.adadagrad.AdaGradNorm` and the batch-size controllers).

:func:`check` trains an MLP on the 5,000-image MNIST subset with AdaGradNorm (per-row accumulators, as
the official code) at a small and a large constant batch and with the norm-test batch controller, every
arm for the same number of processed samples (the official experiments' ``max_samples``) and at its own
learning rate chosen on a validation split from one grid; it counts steps and samples until a target
training loss and the final test accuracy, paired per seed. Protocol in ``specs/adadagrad.toml``; run
``lifelong reproduce adadagrad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.optim.adadagrad import (
    AdaGradNorm,
    BatchSizeController,
    InnerProductTestBatchController,
    NormTestBatchController,
)
from lifelong.papers.base import Claim, Paper
from lifelong.papers.common import mean as _mean
from lifelong.papers.spec import load_spec


def _mlp(seed: int, dim: int, hidden: int, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))


def mnist_split(seed: int, test_fraction: float = 0.2):
    """The 5,000-image MNIST subset (``load_dataset("mnist")``), flattened to 784 values in [0, 1] and split
    at random with ``seed``: ``(x_train, y_train, x_test, y_test)``."""
    from lifelong.papers.common import load_data

    d = load_data({"name": "mnist", "seed": seed, "test_fraction": test_fraction})
    return d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test


def validation_split(data, fraction: float, seed: int):
    """``(x_fit, y_fit, x_val, y_val)``: a random ``fraction`` of a training set (drawn with ``seed``) held out."""
    x, y = data[0], data[1]
    n_val = max(1, int(round(fraction * x.shape[0])))
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    fit, val = perm[:-n_val], perm[-n_val:]
    return x[fit], y[fit], x[val], y[val]


def run_adaptive_batch(
    controller: BatchSizeController | None,
    batch_size: int,
    *,
    seed: int,
    target: float,
    budget: int,
    data,
    lr: float = 0.5,
    eval_every: int = 1000,
    hidden: int = 128,
    granularity: str = "row",
) -> dict:
    """Train the MLP with AdaGradNorm for ``budget`` processed samples; ``controller=None`` keeps ``batch_size``.

    Batches are read in order from a permutation of the training set, reshuffled each epoch (as a
    shuffling data loader). The last batch is cut so that every run processes exactly ``budget``
    samples. The full training loss is evaluated whenever the processed samples pass a multiple of
    ``eval_every``; ``steps``/``samples`` are those of the first evaluation at or below ``target``
    (``None`` if never). Returns them with the batch-size history, the final training loss and the
    accuracy (%) on ``data``'s evaluation part.
    """
    x, y, xt, yt = data
    n = x.shape[0]
    model = _mlp(seed, x.shape[1], hidden)
    opt = AdaGradNorm(model.parameters(), lr=lr, granularity=granularity)
    gen = torch.Generator().manual_seed(seed + 7)
    order, pos = torch.randperm(n, generator=gen), 0
    bs = controller.batch_size if controller is not None else batch_size
    history = [bs]
    samples = steps = 0
    next_eval = eval_every
    reached_steps = reached_samples = None
    loss = float("nan")
    curve = []
    while samples < budget:
        take = min(bs, budget - samples)
        parts = []
        while take > 0:
            if pos == n:
                order, pos = torch.randperm(n, generator=gen), 0
            k = min(take, n - pos)
            parts.append(order[pos : pos + k])
            pos += k
            take -= k
        idx = torch.cat(parts)
        if controller is not None and idx.numel() >= 2:
            nxt = controller.update(model, F.cross_entropy, x[idx], y[idx], set_grad=True)
        else:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            nxt = bs
        opt.step()
        samples += idx.numel()
        steps += 1
        bs = nxt
        history.append(bs)
        if samples >= next_eval or samples >= budget:
            while next_eval <= samples:
                next_eval += eval_every
            with torch.no_grad():
                loss = F.cross_entropy(model(x), y).item()
            curve.append((samples, steps, loss))
            if reached_steps is None and loss <= target:
                reached_steps, reached_samples = steps, samples
    with torch.no_grad():
        acc = 100.0 * (model(xt).argmax(1) == yt).float().mean().item()
    return {
        "steps": reached_steps,
        "samples": reached_samples,
        "total_steps": steps,
        "total_samples": samples,
        "history": history,
        "curve": curve,
        "final_train_loss": loss,
        "test_acc": acc,
    }


def _steps(r):  # a run that misses the target counts its whole budget (conservative for the claim)
    return r["steps"] if r["steps"] is not None else r["total_steps"]


def _samples(r):
    return r["samples"] if r["samples"] is not None else r["total_samples"]


def _arm(s: dict, arm: str, n_train: int, eta: float):
    """``(controller or None, batch size)`` of ``arm`` (``c<b>`` or ``adaptive``) for ``n_train`` examples."""
    b0 = s["b0"]
    if arm != "adaptive":
        return None, int(arm[1:])
    if not s["adaptive"]:  # ablation: the controller never runs, the "adaptive" arm stays at b0
        return None, b0
    return NormTestBatchController(b0, n_train, eta=eta, max_test_samples=s["test_samples"]), b0


def reproduce(scale: str = "quick") -> Claim:
    """Run the AdAdaGradNorm vs fixed-batch comparison at ``scale`` (settings from ``specs/adadagrad.toml``)."""
    return check(load_spec("adadagrad", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Run the AdAdaGradNorm vs fixed-batch comparison on one intra-op thread."""
    from lifelong.runtime import single_thread

    with single_thread():
        return _check(settings, scale)


def _check(s: dict, scale: str) -> Claim:
    from lifelong.papers.common import log_row, paired, paired_measured, pick_on_validation

    b0, b_large = s["b0"], s["b_large"]
    small, large = f"c{b0}", f"c{b_large}"
    common = dict(
        target=s["target"],
        eval_every=s["eval_every"],
        hidden=s["hidden"],
        granularity=s["granularity"],
    )

    def one(arm: str, lr: float, seed: int, data, eta: float) -> dict:
        ctl, bs = _arm(s, arm, data[0].shape[0], eta)
        budget = s["epochs"] * data[0].shape[0]
        return run_adaptive_batch(ctl, bs, seed=seed, budget=budget, data=data, lr=lr, **common)

    # Each arm's lr (and the adaptive arm's eta, the method's own knob): the grid value with the best
    # validation accuracy, tuned on the first seed's split; one grid for every arm.
    tune_seed = s["seeds"][0]
    tune_data = validation_split(mnist_split(tune_seed), s["val_fraction"], tune_seed)
    lrs, etas, val_scores = {}, {}, {}
    for arm in (small, large, "adaptive"):
        grid = [(lr, eta) for lr in s["lr_grid"] for eta in (s["eta_grid"] if arm == "adaptive" else [None])]
        (lrs[arm], etas[arm]), scores = pick_on_validation(
            grid, lambda v, a=arm: one(a, v[0], tune_seed, tune_data, v[1])["test_acc"]
        )
        val_scores[arm] = {
            (f"{k[0]:g}" if k[1] is None else f"{k[0]:g}/{k[1]:g}"): round(v, 2) for k, v in scores.items()
        }
    rows = {small: [], large: [], "adaptive": []}
    for seed in s["seeds"]:
        data = mnist_split(seed)
        for arm in rows:
            r = one(arm, lrs[arm], seed, data, etas[arm])
            rows[arm].append(r)
            log_row(
                "adadagrad",
                scale=scale,
                seed=seed,
                arm=arm,
                lr=lrs[arm],
                steps=_steps(r),
                samples=_samples(r),
                reached=r["steps"] is not None,
                final_batch=r["history"][-1],
                test_acc=r["test_acc"],
                final_train_loss=r["final_train_loss"],
            )
    hist = [r["history"] for r in rows["adaptive"]]
    monotone = all(all(b2 >= b1 for b1, b2 in zip(h, h[1:])) for h in hist)
    growth = min(max(h) / h[0] for h in hist)
    steps = {k: [_steps(r) for r in v] for k, v in rows.items()}
    samples = {k: [_samples(r) for r in v] for k, v in rows.items()}
    acc = {k: [r["test_acc"] for r in v] for k, v in rows.items()}
    # Paired per seed: fewer steps than the small batch, fewer samples than the large one (margin 0: the
    # catalogue says "fewer"), each with its 95 % interval above 0.
    p_steps = paired(steps[small], steps["adaptive"], 0.0)
    p_samples = paired(samples[large], samples["adaptive"], 0.0)
    p_acc_large = paired(acc["adaptive"], acc[large], 0.0)
    p_acc_small = paired(acc["adaptive"], acc[small], 0.0)
    grows = monotone and growth >= s["min_growth"]
    measured = {
        "data": "mnist (5,000-image subset, 4,000 train / 1,000 test)",
        "sample_budget": rows[small][0]["total_samples"],
        "epochs": s["epochs"],
        "target_train_loss": s["target"],
        "seeds": len(s["seeds"]),
        **{f"lr_{k}": v for k, v in lrs.items()},
        "eta_adaptive": etas["adaptive"],
        "batch_monotone": monotone,
        "batch_growth_min_over_seeds": round(growth, 2),
        "final_batch_sizes": [h[-1] for h in hist],
        **{f"steps_to_target_{k}": round(_mean(v), 1) for k, v in steps.items()},
        **{f"samples_to_target_{k}": round(_mean(v), 1) for k, v in samples.items()},
        **{f"runs_reaching_target_{k}": sum(r["steps"] is not None for r in v) for k, v in rows.items()},
        **{f"total_steps_{k}": round(_mean([r["total_steps"] for r in v]), 1) for k, v in rows.items()},
        **{f"test_acc_{k}": round(_mean(v), 2) for k, v in acc.items()},
        **{f"final_train_loss_{k}": round(_mean([r["final_train_loss"] for r in v]), 4) for k, v in rows.items()},
        **paired_measured(f"steps_{small}_minus_adaptive", p_steps, 1),
        **paired_measured(f"samples_{large}_minus_adaptive", p_samples, 1),
        **paired_measured(f"test_acc_adaptive_minus_{large}", p_acc_large, 2),
        **paired_measured(f"test_acc_adaptive_minus_{small}", p_acc_small, 2),
        f"fewer_steps_than_{small}": p_steps["held"],
        f"fewer_samples_than_{large}": p_samples["held"],
    }
    if s["extra_etas"] or s["extra_inner_product"]:  # information: other tests at the adaptive arm's lr, first seed
        seed = s["seeds"][0]
        data = mnist_split(seed)
        n_train = data[0].shape[0]
        extra = {
            f"norm_eta{eta}": NormTestBatchController(b0, n_train, eta=eta, max_test_samples=s["test_samples"])
            for eta in s["extra_etas"]
        }
        if s["extra_inner_product"]:
            extra["inner_product"] = InnerProductTestBatchController(b0, n_train, max_test_samples=s["test_samples"])
        for name, ctl in extra.items():
            r = run_adaptive_batch(
                ctl, b0, seed=seed, budget=s["epochs"] * n_train, data=data, lr=lrs["adaptive"], **common
            )
            measured[f"seed{seed}_{name}_steps"] = _steps(r)
            measured[f"seed{seed}_{name}_samples"] = _samples(r)
            measured[f"seed{seed}_{name}_reached"] = r["steps"] is not None
            measured[f"seed{seed}_{name}_final_batch"] = r["history"][-1]
            measured[f"seed{seed}_{name}_test_acc"] = round(r["test_acc"], 2)
    edges = [f"lr_{k}" for k, v in lrs.items() if len(s["lr_grid"]) > 1 and v in (min(s["lr_grid"]), max(s["lr_grid"]))]
    if s["adaptive"] and len(s["eta_grid"]) > 1 and etas["adaptive"] in (min(s["eta_grid"]), max(s["eta_grid"])):
        edges.append("eta_adaptive")
    measured["picks_on_grid_edge"] = edges
    measured["validation_acc_by_lr_or_lr_eta"] = val_scores
    return Claim(
        paper="adadagrad",
        statement="Growing the batch by an adaptive-sampling test lets AdaGrad-Norm use large-batch steps "
        "without paying for large batches from the start",
        criterion=f"at an equal sample budget ({s['epochs']} epochs) and each arm's lr chosen on validation: "
        f"the batch never decreases and grows >= {s['min_growth']:g}x; per seed, the adaptive batch reaches "
        f"train loss <= {s['target']} in fewer steps than b={b0} and with fewer samples than b={b_large} "
        "(paired differences, 95 % interval above 0)",
        measured=measured,
        held=bool(grows and p_steps["held"] and p_samples["held"]),
        scale="full" if scale == "full" else "quick",
        notes=f"MNIST subset (784-{s['hidden']}-10 MLP), AdaGradNorm with {s['granularity']} accumulators, norm "
        f"test with eta from {list(s['eta_grid'])}, b0 {b0}, cap = training-set size, the test on <= "
        f"{s['test_samples']} per-sample gradients per batch; lr grid {list(s['lr_grid'])} per arm (with eta for the "
        f"adaptive arm) on a {s['val_fraction']:g} validation split of "
        f"seed {tune_seed}'s training set (score: validation accuracy at the end of the budget). Training loss is "
        f"evaluated every {s['eval_every']} samples; runs that miss the target count their whole budget. The test "
        "accuracy at the equal budget is reported, not judged.",
    )


PAPER = Paper(
    number=10,
    short_name="adadagrad",
    title="AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient Methods",
    category="optimizer",
    status="claim checked",
    implemented_by=("lifelong.optim.adadagrad",),
    arxiv="2402.11215",
    reproduce=reproduce,
)
