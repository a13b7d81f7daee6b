"""Paper 49: *Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks* (Davari & Belilovsky,
arXiv 2312.06795). Implemented by :mod:`lifelong.merging` (``breadcrumbs``: per row, drop the γ largest
task-vector entries, keep the next β, sum, scale by α).

Claim: Breadcrumbs merges more tasks better than task arithmetic, with hyper-parameters found at few
tasks that transfer to more. Protocol (``specs/breadcrumbs.toml``): an MLP pre-trained on MNIST,
fine-tuned on 6 transformed versions (own heads, backbones merged); normalised accuracy averaged over
all task subsets; every arm tuned at 3 tasks on validation and transferred to 6. Notes and departures:
``docs/papers/breadcrumbs.md``. Run ``lifelong reproduce breadcrumbs [--scale full]``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def transform(x: torch.Tensor, task: str, noise_std: float, seed: int) -> torch.Tensor:
    """Images ``x`` (n, 1, h, w) under ``task``: ``rot0/90/180/270``, ``invert`` or ``noise`` (seeded Gaussian)."""
    if task.startswith("rot"):
        return torch.rot90(x, int(task[3:]) // 90, (2, 3)).contiguous()
    if task == "invert":
        return 1.0 - x
    if task == "noise":
        g = torch.Generator().manual_seed(seed)
        return (x + noise_std * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)
    raise ValueError(f"unknown task {task!r}; use rot0, rot90, rot180, rot270, invert or noise")


def _nets(dim: int, hidden: list[int], classes: int, seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(dim, h), nn.ReLU()]
        dim = h
    return nn.Sequential(*layers), nn.Linear(dim, classes)


def _train(backbone: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: dict, seed: int) -> None:
    params = list(backbone.parameters()) + list(head.parameters())
    sgd = torch.optim.SGD(params, lr=opt["lr"], momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(opt["epochs"]):
        for idx in torch.randperm(len(y), generator=g).split(opt["batch_size"]):
            loss = nn.functional.cross_entropy(head(backbone(x[idx])), y[idx])
            sgd.zero_grad()
            loss.backward()
            sgd.step()


class Setup:
    """One seed's base model, fine-tuned experts (backbone task vectors + heads) and evaluation data."""

    def __init__(self, cfg: dict, seed: int):
        from lifelong.merging import TaskVector
        from lifelong.papers.common import load_data

        data = load_data(cfg["data"] | {"seed": seed})
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(data.y_train), generator=g)
        n_val = int(cfg["val_fraction"] * len(perm))
        tr, va = perm[n_val:], perm[:n_val][: cfg["val_size"]]
        splits = {
            "train": (data.x_train[tr], data.y_train[tr]),
            "val": (data.x_train[va], data.y_train[va]),
            "test": (data.x_test[: cfg["test_size"]], data.y_test[: cfg["test_size"]]),
        }
        self.tasks = list(cfg["tasks"])
        self.data = {
            (t, s): (transform(x, t, cfg["noise_std"], seed * 1000 + i * 10 + j), y)
            for i, t in enumerate(self.tasks)
            for j, (s, (x, y)) in enumerate(splits.items())
        }
        dim = int(np.prod(data.x_train.shape[1:]))
        self.backbone, head = _nets(dim, list(cfg["hidden"]), data.num_classes, seed)
        _train(self.backbone, head, *splits["train"], cfg["pretrain"], seed)  # plain images, all classes
        self.base = {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
        self.vectors, self.heads, self.finetuned = [], [], {}
        for i, t in enumerate(self.tasks):
            self.backbone.load_state_dict(self.base)
            task_head = nn.Linear(head.in_features, head.out_features)
            task_head.load_state_dict(head.state_dict())
            _train(self.backbone, task_head, *self.data[(t, "train")], cfg["finetune"], seed * 100 + i + 1)
            ft = {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
            self.vectors.append(TaskVector.between(self.base, ft))
            self.heads.append(task_head.requires_grad_(False))
            for split in ("val", "test"):
                self.finetuned[(i, split)] = self.accuracy(ft, i, split)

    @torch.no_grad()
    def accuracy(self, state: dict, task: int, split: str) -> float:
        """Accuracy of backbone weights ``state`` with task ``task``'s own head on its ``split`` images."""
        x, y = self.data[(self.tasks[task], split)]
        feats = torch.func.functional_call(self.backbone, state, (x,))
        return float((self.heads[task](feats).argmax(1) == y).float().mean())

    def normalized(self, delta_of, subsets, split: str) -> float:
        """Mean over ``subsets`` and their tasks of 100 · acc(base + delta_of(subset)) / fine-tuned acc."""
        scores = []
        for subset in subsets:
            delta = delta_of(subset)
            state = {k: v + delta[k] if k in delta else v for k, v in self.base.items()}
            scores += [100 * self.accuracy(state, t, split) / self.finetuned[(t, split)] for t in subset]
        return float(np.mean(scores))


def _scaled(vector, alpha: float) -> dict:
    return {k: alpha * v for k, v in vector.items()}


def _sum(vectors) -> dict:
    return {k: sum(v[k] for v in vectors) for k in vectors[0]}


def _tune(setup: Setup, grid: list[tuple], delta_of, subsets, split: str = "val") -> tuple[tuple, dict]:
    """The grid point with the best normalised accuracy on ``split`` over ``subsets`` (ties: earlier point)."""
    from lifelong.papers.common import pick_on_validation

    return pick_on_validation(grid, lambda p: setup.normalized(lambda s: delta_of(p, s), subsets, split))


def run_seed(cfg: dict, seed: int) -> dict:
    """Every arm of one seed: tuned at ``tune_tasks`` tasks on validation, scored at ``eval_tasks`` on test."""
    from lifelong.merging import merge_task_vectors

    setup = Setup(cfg, seed)
    n = len(setup.tasks)
    tune_sets = list(itertools.combinations(range(n), cfg["tune_tasks"]))
    eval_sets = list(itertools.combinations(range(n), cfg["eval_tasks"]))
    alphas = list(cfg["alpha_grid"])
    per_row = cfg["per_row"]

    crumbs = {}  # (β, γ) -> each task's masked vector (the merge of one vector at α = 1)

    def masked(beta, gamma, t):
        if (beta, gamma) not in crumbs:
            crumbs[(beta, gamma)] = [
                merge_task_vectors([v], "breadcrumbs", density=beta, gamma=gamma, alpha=1.0, per_row=per_row)
                for v in setup.vectors
            ]
        return crumbs[(beta, gamma)][t]

    ties_cache = {}

    def ties_of(subset):
        if subset not in ties_cache:
            vecs = [setup.vectors[t] for t in subset]
            ties_cache[subset] = merge_task_vectors(vecs, "ties", density=cfg["ties_density"], alpha=1.0)
        return ties_cache[subset]

    arms = {
        "task_arithmetic": ([(a,) for a in alphas], lambda p, s: _scaled(_sum([setup.vectors[t] for t in s]), p[0])),
        "ties": ([(a,) for a in alphas], lambda p, s: _scaled(ties_of(s), p[0])),
        "breadcrumbs": (
            list(itertools.product(cfg["density_grid"], cfg["gamma_grid"], alphas)),
            lambda p, s: _scaled(_sum([masked(p[0], p[1], t) for t in s]), p[2]),
        ),
        "no_outlier_removal": (
            list(itertools.product(cfg["density_grid"], [0.0], alphas)),
            lambda p, s: _scaled(_sum([masked(p[0], p[1], t) for t in s]), p[2]),
        ),
    }
    out = {"seed": seed, "finetuned_test": float(np.mean([setup.finetuned[(t, "test")] for t in range(n)]))}
    out["base_only"] = setup.normalized(lambda s: {}, eval_sets, "test")
    for arm, (grid, delta_of) in arms.items():
        out[arm] = _score_arm(setup, cfg, arm, grid, delta_of, tune_sets, eval_sets)
    return out


def _score_arm(setup: Setup, cfg: dict, arm: str, grid: list, delta_of, tune_sets: list, eval_sets: list) -> dict:
    """One arm: its grid point picked on validation at the tuning depth, scored on test at the evaluation depth."""
    n = len(setup.tasks)
    best, _ = _tune(setup, grid, delta_of, tune_sets)
    score = lambda point, subsets: setup.normalized(lambda s: delta_of(point, s), subsets, "test")
    out = {"chosen": list(best), "test": score(best, eval_sets)}
    if arm in ("task_arithmetic", "breadcrumbs"):
        oracle, scores = _tune(setup, grid, delta_of, eval_sets, "test")  # the best grid value at eval depth
        out["best_grid_test"], out["best_grid_point"] = scores[oracle], list(oracle)
    if arm == "task_arithmetic":  # a stronger baseline, reported: α tuned on validation at the evaluation depth
        direct, _ = _tune(setup, grid, delta_of, eval_sets)
        out["tuned_at_eval_depth"], out["chosen_at_eval_depth"] = score(direct, eval_sets), list(direct)
    out["trend"] = {k: score(best, list(itertools.combinations(range(n), k))) for k in cfg["trend_depths"]}
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Run the Breadcrumbs protocol of ``specs/breadcrumbs.toml`` at ``scale``."""
    return check(load_spec("breadcrumbs", scale), scale)


def check(cfg: dict, scale: str) -> Claim:
    """Measure every seed and judge: Breadcrumbs − task arithmetic ≥ margin at 6 tasks; 3 → 6 transfer."""
    from lifelong.papers.common import log_row, paired, paired_measured

    if cfg["eval_tasks"] > len(cfg["tasks"]) or cfg["tune_tasks"] > cfg["eval_tasks"]:
        from lifelong.errors import ConfigError

        raise ConfigError("need tune_tasks <= eval_tasks <= number of tasks; lower tune_tasks or eval_tasks")
    runs = []
    for seed in cfg["seeds"]:
        runs.append(run_seed(cfg, seed))
        log_row("breadcrumbs", scale=scale, **runs[-1])
    col = lambda arm, key="test": [r[arm][key] for r in runs]
    gain = paired(col("breadcrumbs"), col("task_arithmetic"), cfg["margin"])
    transfer = paired([a + cfg["transfer_gap"] for a in col("breadcrumbs")], col("breadcrumbs", "best_grid_test"))
    ablation = paired(col("breadcrumbs"), col("no_outlier_removal"))
    strong = paired(col("breadcrumbs"), col("task_arithmetic", "tuned_at_eval_depth"))
    k = cfg["eval_tasks"]
    m = {"finetuned test acc (mean over tasks)": round(float(np.mean([r["finetuned_test"] for r in runs])), 4)}
    m[f"pre-trained backbone, normalised acc at {k}"] = round(float(np.mean([r["base_only"] for r in runs])), 2)
    for arm in ("task_arithmetic", "ties", "breadcrumbs", "no_outlier_removal"):
        m[f"{arm} normalised acc at {k}"] = round(float(np.mean(col(arm))), 2)
        m[f"{arm} chosen at {cfg['tune_tasks']} (per seed)"] = "; ".join(
            ",".join(f"{v:g}" for v in r[arm]["chosen"]) for r in runs
        )
        for depth in cfg["trend_depths"]:
            m[f"{arm} trend k={depth}"] = round(float(np.mean([r[arm]["trend"][depth] for r in runs])), 2)
    m[f"breadcrumbs best grid value at {k} (test)"] = round(float(np.mean(col("breadcrumbs", "best_grid_test"))), 2)
    direct = col("task_arithmetic", "tuned_at_eval_depth")
    m[f"task_arithmetic with alpha tuned at {k} (validation)"] = round(float(np.mean(direct)), 2)
    m.update(paired_measured("breadcrumbs - task_arithmetic", gain, 2))
    m.update(paired_measured("breadcrumbs + transfer_gap - best grid", transfer, 2))
    m.update(paired_measured("breadcrumbs - no_outlier_removal", ablation, 2))
    m.update(paired_measured("breadcrumbs - task_arithmetic tuned at eval depth", strong, 2))
    m["gain_held"], m["transfer_held"], m["ablation_held"] = gain["held"], transfer["held"], ablation["held"]
    grid = (
        f"α {list(cfg['alpha_grid'])}, β {list(cfg['density_grid'])}, γ {list(cfg['gamma_grid'])}"
        f" ({'per row' if cfg['per_row'] else 'flattened'})"
    )
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "masking both the largest-magnitude outliers and the negligible entries of each task vector merges many "
            "tasks better than task arithmetic, with hyper-parameters found at few tasks that transfer to more"
        ),
        criterion=(
            f"{cfg['data']['name']} MLP {list(cfg['hidden'])} pre-trained on plain images, fine-tuned on "
            f"{len(cfg['tasks'])} tasks ({', '.join(cfg['tasks'])}) with own heads, backbones merged; normalised "
            f"accuracy (merged / fine-tuned × 100) averaged over all C({len(cfg['tasks'])},k) subsets; every arm's "
            f"hyper-parameters picked at {cfg['tune_tasks']} tasks on validation from one grid ({grid}; TIES density "
            f"{cfg['ties_density']}, α from the same grid) and used at {k} tasks; seeds {list(cfg['seeds'])}, paired: "
            f"Breadcrumbs − task arithmetic ≥ {cfg['margin']} pt with the 95 % interval above 0, and Breadcrumbs "
            f"within {cfg['transfer_gap']} pt of its own best grid value at {k} tasks (interval of "
            f"result + {cfg['transfer_gap']} − best above 0)"
        ),
        measured=m,
        held=bool(gain["held"] and transfer["held"]),
        scale=scale,
        notes=(
            "Ablation no_outlier_removal = Breadcrumbs with γ = 0 (plain top-β magnitude masks), tuned the same way; "
            "'ablation_held' says whether removing outliers adds with its interval above 0. TIES and task arithmetic "
            "tuned at the evaluation depth are reported, not judged."
        ),
    )


PAPER = Paper(
    number=49,
    short_name="breadcrumbs",
    title="Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks",
    category="merging/routing",
    status="claim checked",
    implemented_by=("lifelong.merging",),
    arxiv="2312.06795",
    reproduce=reproduce,
)
