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


def run_comparison(data, seeds, methods: dict[str, tuple[type, dict]], tasks: int = 5, batch_size: int = 10) -> dict:
    """Final average accuracy per method and seed, plus OnPro's APF pair ranks.

    Returns ``{"accuracy": {method: [acc per seed]}, "apf": [per-seed dicts],
    "seconds": {method: [learn seconds per seed]}}``.
    """
    from lifelong.evaluation import run
    from lifelong.methods.config import build_config
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
            if name == "onpro":
                pair = learner.top_apf_pair()
                pred = learner.predict(x_test).argmax(1)
                conf = confusion_matrix(pred, y_test, stream.num_classes)
                rank = pair_confusion_rank(conf, pair) if pair is not None else None
                apf.append(
                    {
                        "seed": seed,
                        "top_pair": list(pair) if pair else None,
                        "rank": rank,
                        "pair_share": float(learner.apf_pair_counts.max() / learner.apf_pair_counts.sum()),
                    }
                )
    return {"accuracy": acc, "apf": apf, "seconds": secs}


def reproduce(scale: str = "quick") -> Claim:
    """Run the OnPro comparison at ``scale`` (settings from ``specs/onpro.toml``)."""
    return check(load_spec("onpro", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """OnPro vs ER on an online class-incremental stream, and APF's pair vs the most confused ones."""
    from lifelong.papers.common import load_data

    seeds, learner = settings["seeds"], settings["learner"]
    data = load_data(settings["data"])
    with torch.random.fork_rng(devices=[]):
        out = run_comparison(
            data, seeds, methods_from(settings), tasks=settings["tasks"], batch_size=settings["batch_size"]
        )
    acc = {k: float(np.mean(v)) for k, v in out["accuracy"].items()}
    best_er = max(acc["er"], acc["er_replay64"])
    margin = acc["onpro"] - best_er
    ranks = [a["rank"] for a in out["apf"]]
    top = settings["top_pairs"]
    in_top3 = sum(1 for r in ranks if r is not None and r <= top)
    held_acc = margin >= settings["min_gain"]
    held_apf = in_top3 * 2 > len(seeds)
    measured = {f"final_acc/{k}": round(v, 4) for k, v in acc.items()}
    measured.update({f"final_acc_std/{k}": round(float(np.std(v)), 4) for k, v in out["accuracy"].items()})
    measured["onpro_minus_best_er"] = round(margin, 4)
    measured["apf_top_pair_rank_per_seed"] = ", ".join(str(r) for r in ranks)
    measured["apf_top_pair_per_seed"] = "; ".join(str(a["top_pair"]) for a in out["apf"])
    measured[f"apf_top_pair_in_top{top}_seeds"] = f"{in_top3}/{len(seeds)}"
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "online prototype learning (OPE + APF) beats experience replay with the same buffer on an "
            "online class-incremental stream, and APF mixes up the classes the model confuses most"
        ),
        criterion=(
            f"OnPro final average accuracy >= max(ER, ER with replay batch 64) + {settings['min_gain'] * 100:g} "
            f"points, mean over seeds; APF's most-sampled pair in the last experience ranks among the {top} "
            "most-confused pairs of the final confusion matrix in a majority of seeds"
        ),
        measured=measured,
        held=bool(held_acc and held_apf),
        scale=scale,
        notes=(
            f"{settings['data']['name']}; online stream of {settings['tasks']} x 2 classes, batch "
            f"{settings['batch_size']}, one pass, reservoir buffer {learner['buffer_size']}; MLP 256-256; "
            f"{learner['optimizer']} lr {learner['lr']} for every method (tuned on seeds 100-101); seeds {seeds}. "
            f"accuracy part {'held' if held_acc else 'NOT held'}, APF part {'held' if held_apf else 'NOT held'}"
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
