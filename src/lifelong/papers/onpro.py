"""Paper 28: *Online Prototype Learning for Online Continual Learning* (OnPro; Wei et al., ICCV 2023).
Implemented by :mod:`lifelong.methods.onpro` (online prototype equilibrium + adaptive prototypical
feedback) with the losses in :mod:`lifelong.heads.losses`.

Claim (scaled down): OnPro beats experience replay with the same buffer on an online class-incremental
stream, and APF mixes up the classes the model confuses most. Protocol in ``specs/onpro.toml``
(notes on digits vs MNIST in benchmarks/online_replayfree_results.md). Run ``lifelong reproduce onpro``.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def methods_from(settings: dict) -> dict[str, tuple[type, dict]]:
    """{row: (learner class, config)} for the spec's ``rows``, each config over the shared ``learner`` settings."""
    from lifelong.methods import get_method

    rows = {row: settings["methods"][row] for row in settings["rows"]}
    return {row: (get_method(m["method"]), {**settings["learner"], **m["config"]}) for row, m in rows.items()}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``M[i, j]`` = number of test examples of class i predicted as class j."""
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def pair_confusion_rank(confusion: torch.Tensor, pair: tuple[int, int]) -> int:
    """1-based rank of ``pair`` among all class pairs by symmetric confusion ``M[a, b] + M[b, a]``.

    Ties count in the pair's favour (rank = 1 + number of pairs strictly more confused).
    """
    sym = confusion + confusion.T
    iu = torch.triu_indices(len(sym), len(sym), 1)
    values = sym[iu[0], iu[1]]
    a, b = sorted(pair)
    return 1 + int((values > sym[a, b]).sum())


def validation_data(data, fraction: float, seed: int):
    """``data`` with its test split replaced by a held-out ``fraction`` of its training split (per class).

    Learning rates are chosen on it, never on the test split.
    """
    from lifelong.data import Dataset

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(20_011 + int(seed))
    train, held = [], []
    for c in range(data.num_classes):
        idx = torch.nonzero(data.y_train == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    tr, va = torch.cat(train).sort().values, torch.cat(held).sort().values
    return Dataset(
        data.name, data.x_train[tr], data.y_train[tr], data.x_train[va], data.y_train[va], list(data.class_names)
    )


def run_comparison(data, seeds, methods: dict[str, tuple[type, dict]], tasks: int = 5, batch_size: int = 10) -> dict:
    """Final average accuracy per method and seed, plus OnPro's APF pair ranks.

    Returns ``{"accuracy": {method: [acc per seed]}, "apf": [per-seed dicts],
    "seconds": {method: [learn seconds per seed]}}``.
    """
    from lifelong.evaluation import run
    from lifelong.methods.config import build_config
    from lifelong.papers.common import log_row
    from lifelong.scenarios import online

    acc = {m: [] for m in methods}
    secs = {m: [] for m in methods}
    apf = []
    for seed in seeds:
        stream = online(data, tasks=tasks, batch_size=batch_size, seed=seed)
        tests = [e.test_tensors() for e in stream]
        x_test = torch.cat([t[0] for t in tests])
        y_test = torch.cat([t[1] for t in tests])
        for name, (cls, cfg) in methods.items():
            learner = cls(build_config(cls.config_class, cfg), seed=seed)
            result = run(stream, learner, seed=seed, progress=False)
            acc[name].append(float(result.accuracy_matrix[-1].mean()))
            secs[name].append(float(sum(result.learn_seconds)))
            log_row("onpro", data=data.name, arm=name, seed=seed, lr=cfg.get("lr"), acc=acc[name][-1])
            if name == "onpro":
                pair = learner.top_apf_pair()
                pair_run = learner.top_apf_pair(total=True)
                pred = learner.predict(x_test).argmax(1)
                conf = confusion_matrix(pred, y_test, stream.num_classes)
                rank = pair_confusion_rank(conf, pair) if pair is not None else None
                rank_run = pair_confusion_rank(conf, pair_run) if pair_run is not None else None
                apf.append(
                    {
                        "seed": seed,
                        "top_pair": list(pair) if pair else None,
                        "rank": rank,
                        "rank_whole_run": rank_run,
                        "pair_share": float(learner.apf_pair_counts.max() / learner.apf_pair_counts.sum()),
                    }
                )
    return {"accuracy": acc, "apf": apf, "seconds": secs}


def tune_lrs(data, settings: dict) -> tuple[dict, dict]:
    """Each row's learning rate from ``lr_grid``, chosen on validation streams (final average accuracy).

    The validation streams hold out ``validation_fraction`` of the training split (seeds
    ``tune_seeds``). Returns ``({row: lr}, {row: {lr: score}})``; a one-value grid is not scored.
    """
    from lifelong.papers.common import pick_on_validation

    methods = methods_from(settings)
    grid = settings["lr_grid"]
    chosen, scores = {}, {}
    for row, (cls, cfg) in methods.items():
        if len(grid) == 1:
            chosen[row], scores[row] = grid[0], {}
            continue

        def score(lr, row=row, cls=cls, cfg=cfg):
            vals = []
            for seed in settings["tune_seeds"]:
                val = validation_data(data, settings["validation_fraction"], seed)
                out = run_comparison(
                    val, [seed], {row: (cls, {**cfg, "lr": lr})}, settings["tasks"], settings["batch_size"]
                )
                vals.append(out["accuracy"][row][0])
            return float(np.mean(vals))

        chosen[row], scores[row] = pick_on_validation(grid, score)
    return chosen, scores


def reproduce(scale: str = "quick") -> Claim:
    """Run the OnPro comparison at ``scale`` (settings from ``specs/onpro.toml``)."""
    return check(load_spec("onpro", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """OnPro vs ER (paired over seeds) on an online class-incremental stream, and APF's pair vs the most confused."""
    from lifelong.papers.common import load_data, paired, paired_measured

    seeds = settings["seeds"]
    data = load_data(settings["data"])
    with torch.random.fork_rng(devices=[]):
        lrs, _ = tune_lrs(data, settings)
        methods = {row: (cls, {**cfg, "lr": lrs[row]}) for row, (cls, cfg) in methods_from(settings).items()}
        out = run_comparison(data, seeds, methods, tasks=settings["tasks"], batch_size=settings["batch_size"])
    accs = out["accuracy"]
    acc = {k: float(np.mean(v)) for k, v in accs.items()}
    best_row = max(("er", "er_replay64"), key=lambda r: acc[r])
    p = paired(accs["onpro"], accs[best_row], settings["min_gain"])
    margin = p["mean"]
    ranks = [a["rank"] for a in out["apf"]]
    top = settings["top_pairs"]
    in_top3 = sum(1 for r in ranks if r is not None and r <= top)
    held_acc = p["held"]
    held_apf = in_top3 * 2 > len(seeds)
    measured = {f"final_acc/{k}": round(v, 4) for k, v in acc.items()}
    measured.update({f"final_acc_std/{k}": round(float(np.std(v)), 4) for k, v in accs.items()})
    measured.update({f"final_acc_per_seed/{k}": ", ".join(f"{a:.3f}" for a in v) for k, v in accs.items()})
    measured.update({f"lr/{k}": v for k, v in lrs.items()})
    measured["onpro_minus_best_er"] = round(margin, 4)
    measured.update(paired_measured(f"onpro_vs_{best_row}", p))
    facts = []
    if "onpro_no_apf" in accs:
        q = paired(accs["onpro"], accs["onpro_no_apf"])
        measured.update(paired_measured("apf_effect", q))
        facts.append(
            f"APF effect (OnPro - OnPro without APF) {q['mean'] * 100:+.1f} pts [{q['lo'] * 100:+.1f}, "
            f"{q['hi'] * 100:+.1f}]"
        )
    measured["apf_top_pair_rank_per_seed"] = ", ".join(str(r) for r in ranks)
    # beside the claim: the pair most sampled over the whole stream (not only the last experience)
    measured["apf_top_pair_whole_run_rank_per_seed"] = ", ".join(str(a.get("rank_whole_run")) for a in out["apf"])
    measured["apf_top_pair_per_seed"] = "; ".join(str(a["top_pair"]) for a in out["apf"])
    measured[f"apf_top_pair_in_top{top}_seeds"] = f"{in_top3}/{len(seeds)}"
    learner = settings["learner"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "online prototype learning (OPE + APF) beats experience replay with the same buffer on an "
            "online class-incremental stream, and APF mixes up the classes the model confuses most"
        ),
        criterion=(
            f"OnPro - the better of ER and ER with replay batch 64 (final average accuracy, paired over seeds): "
            f"mean >= {settings['min_gain'] * 100:g} points and 95 % interval above 0; APF's most-sampled pair "
            f"in the last experience ranks among the {top} most-confused pairs of the final confusion matrix in "
            "a majority of seeds"
        ),
        measured=measured,
        held=bool(held_acc and held_apf),
        scale=scale,
        notes=(
            f"{settings['data']['name']}; online stream of {settings['tasks']} x 2 classes, batch "
            f"{settings['batch_size']}, one pass, reservoir buffer {learner['buffer_size']}; MLP 256-256; "
            f"{learner['optimizer']} (weight decay {learner.get('weight_decay', 0):g}, "
            f"{'fresh per experience' if learner.get('reset_optimizer', True) else 'one for the stream'}, every row), "
            f"lr per row from {settings['lr_grid']} on a "
            f"{settings['validation_fraction']:.0%} validation split of the training data (seeds "
            f"{settings['tune_seeds']}): {lrs}; seeds {seeds}. "
            f"accuracy part {'held' if held_acc else 'NOT held'}, APF part {'held' if held_apf else 'NOT held'}"
            + (". " + "; ".join(facts) if facts else "")
        ),
    )


PAPER = Paper(
    number=28,
    short_name="onpro",
    title="Online Prototype Learning for Online Continual Learning",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.onpro", "lifelong.heads.losses"),
    arxiv="2308.00301",
    reproduce=reproduce,
)
