"""Paper 49: *Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks* (Davari & Belilovsky,
arXiv 2312.06795). Implemented by :mod:`lifelong.merging` (``breadcrumbs``: per row, drop the γ largest
task-vector entries, keep the next β, sum, scale by α).

Claim: Breadcrumbs merges more tasks better than task arithmetic, with hyper-parameters found at few
tasks that transfer to more. Protocol (``specs/breadcrumbs.toml``): an MLP pre-trained on 6 transformed
versions of MNIST, briefly fine-tuned on each (own heads, backbones merged); normalised accuracy averaged over
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
    """One seed's base model, fine-tuned experts (backbone task vectors + heads) and evaluation data.

    The base is pre-trained with one head on every task's training images (``pretrain``); each expert is then a
    short, small-lr fine-tune of the base backbone and a copy of that head on one task (``finetune``).
    """

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
        x_all = torch.cat([self.data[(t, "train")][0] for t in self.tasks])
        y_all = torch.cat([self.data[(t, "train")][1] for t in self.tasks])
        _train(self.backbone, head, x_all, y_all, cfg["pretrain"], seed)  # every task's images, one head
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

    def score(self, state: dict, task: int, split: str) -> float:
        """Normalised accuracy: 100 · acc(``state``) / the task's fine-tuned accuracy on ``split``."""
        return 100 * self.accuracy(state, task, split) / self.finetuned[(task, split)]

    def normalized(self, delta_of, subsets, split: str) -> float:
        """Mean over ``subsets`` and their tasks of the normalised accuracy of base + delta_of(subset)."""
        scores = []
        for subset in subsets:
            delta = delta_of(subset)
            state = {k: v + delta[k] if k in delta else v for k, v in self.base.items()}
            scores += [self.score(state, t, split) for t in subset]
        return float(np.mean(scores))


def _scaled(vector, alpha: float) -> dict:
    return {k: alpha * v for k, v in vector.items()}


def _sum(vectors) -> dict:
    return {k: sum(v[k] for v in vectors) for k in vectors[0]}


def _flat(vector) -> torch.Tensor:
    return torch.cat([vector[k].reshape(-1).float() for k in sorted(vector)])


def vector_geometry(base: dict, vectors: list) -> dict:
    """‖τ_t‖ / ‖θ_base‖ (over the merged keys; mean and max over tasks) and the pairwise cosines of the τ_t."""
    flats = torch.stack([_flat(v) for v in vectors])
    base_norm = float(_flat({k: base[k] for k in vectors[0]}).norm())
    ratio = flats.norm(dim=1) / base_norm if base_norm > 0 else torch.full((len(vectors),), float("nan"))
    unit = flats / flats.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (unit @ unit.T)[torch.triu_indices(len(vectors), len(vectors), 1).unbind()]
    return {
        "ratio_mean": float(ratio.mean()),
        "ratio_max": float(ratio.max()),
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "cos_max": float(cos.max()),
    }


def dropped_per_row(gammas, vector) -> dict:
    """For each γ, ``{row width: outliers dropped per row}`` over ``vector``'s tensors (``int(γ · d)``, the floor
    of the official code; per-row masks, rows along the last dimension)."""
    widths = sorted({v.shape[-1] for v in vector.values() if v.dim() > 0})
    return {g: {d: int(g * d) for d in widths} for g in gammas}


def _tune(setup, grid: list[tuple], delta_of, subsets, split: str = "val") -> tuple[tuple, dict]:
    """The grid point with the best normalised accuracy on ``split`` over ``subsets`` (ties: earlier point)."""
    from lifelong.papers.common import pick_on_validation

    return pick_on_validation(grid, lambda p: setup.normalized(lambda s: delta_of(p, s), subsets, split))


def run_seed(cfg: dict, seed: int, make_setup=Setup) -> dict:
    """Every arm of one seed: tuned at ``tune_tasks`` tasks on validation, scored at ``eval_tasks`` on test.

    ``make_setup(cfg, seed)`` builds the experts (default :class:`Setup`); anything with ``tasks``, ``base``,
    ``vectors`` and ``normalized`` works, which is how the tests feed the verdict a synthetic control.
    """
    from lifelong.merging import merge_task_vectors

    setup = make_setup(cfg, seed)
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

    def ties_of(density, subset):
        if (density, subset) not in ties_cache:
            vecs = [setup.vectors[t] for t in subset]
            ties_cache[(density, subset)] = merge_task_vectors(vecs, "ties", density=density, alpha=1.0)
        return ties_cache[(density, subset)]

    crumbs_delta = lambda p, s: _scaled(_sum([masked(p[0], p[1], t) for t in s]), p[2])
    arms = {
        "task_arithmetic": ([(a,) for a in alphas], lambda p, s: _scaled(_sum([setup.vectors[t] for t in s]), p[0])),
        "ties": (
            list(itertools.product(cfg["ties_density_grid"], alphas)),
            lambda p, s: _scaled(ties_of(p[0], s), p[1]),
        ),
        "breadcrumbs": (list(itertools.product(cfg["density_grid"], cfg["gamma_grid"], alphas)), crumbs_delta),
        "no_outlier_removal": (list(itertools.product(cfg["density_grid"], [0.0], alphas)), crumbs_delta),
    }
    out = {"seed": seed, "geometry": vector_geometry(setup.base, setup.vectors)}
    out["dropped_per_row"] = {str(g): c for g, c in dropped_per_row(cfg["gamma_grid"], setup.vectors[0]).items()}
    if hasattr(setup, "finetuned"):
        out["finetuned_test"] = float(np.mean([setup.finetuned[(t, "test")] for t in range(n)]))
    out["base_only"] = setup.normalized(lambda s: {}, eval_sets, "test")
    for arm, (grid, delta_of) in arms.items():
        out[arm] = _score_arm(setup, cfg, arm, grid, delta_of, tune_sets, eval_sets)
    return out


def _score_arm(setup, cfg: dict, arm: str, grid: list, delta_of, tune_sets: list, eval_sets: list) -> dict:
    """One arm: its grid point picked on validation at the tuning depth, scored on test at the evaluation depth.

    Also: the point picked on validation at the evaluation depth (a stronger, reported baseline) and, for
    Breadcrumbs, its best grid value on test at the evaluation depth (the transfer criterion's reference).
    """
    n = len(setup.tasks)
    best, _ = _tune(setup, grid, delta_of, tune_sets)
    score = lambda point, subsets: setup.normalized(lambda s: delta_of(point, s), subsets, "test")
    out = {"chosen": list(best), "test": score(best, eval_sets)}
    if arm == "breadcrumbs":
        oracle, scores = _tune(setup, grid, delta_of, eval_sets, "test")
        out["best_grid_test"], out["best_grid_point"] = scores[oracle], list(oracle)
    direct, _ = _tune(setup, grid, delta_of, eval_sets)
    out["tuned_at_eval_depth"], out["chosen_at_eval_depth"] = score(direct, eval_sets), list(direct)
    out["trend"] = {k: score(best, list(itertools.combinations(range(n), k))) for k in cfg["trend_depths"]}
    return out


def reproduce(scale: str = "quick") -> Claim:
    """Run the Breadcrumbs protocol of ``specs/breadcrumbs.toml`` at ``scale``."""
    return check(load_spec("breadcrumbs", scale), scale)


def check(cfg: dict, scale: str, make_setup=Setup) -> Claim:
    """Measure every seed and judge: Breadcrumbs − task arithmetic ≥ margin at 6 tasks; 3 → 6 transfer."""
    from lifelong.papers.common import log_row, paired, paired_measured

    if cfg["eval_tasks"] > len(cfg["tasks"]) or cfg["tune_tasks"] > cfg["eval_tasks"]:
        from lifelong.errors import ConfigError

        raise ConfigError("need tune_tasks <= eval_tasks <= number of tasks; lower tune_tasks or eval_tasks")
    runs = []
    for seed in cfg["seeds"]:
        runs.append(run_seed(cfg, seed, make_setup))
        log_row("breadcrumbs", scale=scale, **runs[-1])
    col = lambda arm, key="test": [r[arm][key] for r in runs]
    gain = paired(col("breadcrumbs"), col("task_arithmetic"), cfg["margin"])
    transfer = paired([a + cfg["transfer_gap"] for a in col("breadcrumbs")], col("breadcrumbs", "best_grid_test"))
    ablation = paired(col("breadcrumbs"), col("no_outlier_removal"))
    at_eval = paired(col("breadcrumbs", "tuned_at_eval_depth"), col("task_arithmetic", "tuned_at_eval_depth"))
    k, kt = cfg["eval_tasks"], cfg["tune_tasks"]
    mean = lambda xs, d=2: round(float(np.mean(xs)), d)
    geo = lambda key: mean([r["geometry"][key] for r in runs], 4)
    m = {}
    if "finetuned_test" in runs[0]:
        m["finetuned test acc (mean over tasks)"] = mean([r["finetuned_test"] for r in runs], 4)
    m["|tau| / |theta_base| (mean over tasks; max)"] = f"{geo('ratio_mean'):.4f}; {geo('ratio_max'):.4f}"
    cos = f"{geo('cos_mean'):.3f}; {geo('cos_min'):.3f}..{geo('cos_max'):.3f}"
    m["cosine between task vectors (mean; min..max)"] = cos
    m["outliers dropped per row (gamma: {row width: count})"] = "; ".join(
        f"{g}: {c}" for g, c in runs[0]["dropped_per_row"].items()
    )
    m[f"pre-trained backbone, normalised acc at {k}"] = mean([r["base_only"] for r in runs])
    for arm in ("task_arithmetic", "ties", "breadcrumbs", "no_outlier_removal"):
        m[f"{arm} normalised acc at {k}"] = mean(col(arm))
        m[f"{arm} chosen at {kt} (per seed)"] = "; ".join(",".join(f"{v:g}" for v in r[arm]["chosen"]) for r in runs)
        m[f"{arm} tuned at {k} on validation"] = mean(col(arm, "tuned_at_eval_depth"))
        m[f"{arm} chosen at {k} (per seed)"] = "; ".join(
            ",".join(f"{v:g}" for v in r[arm]["chosen_at_eval_depth"]) for r in runs
        )
        for depth in cfg["trend_depths"]:
            m[f"{arm} trend k={depth}"] = mean([r[arm]["trend"][depth] for r in runs])
    m[f"breadcrumbs best grid value at {k} (test)"] = mean(col("breadcrumbs", "best_grid_test"))
    m.update(paired_measured("breadcrumbs - task_arithmetic", gain, 2))
    m.update(paired_measured("breadcrumbs + transfer_gap - best grid", transfer, 2))
    m.update(paired_measured("breadcrumbs - no_outlier_removal", ablation, 2))
    m.update(paired_measured(f"both tuned at {k}: breadcrumbs - task_arithmetic", at_eval, 2))
    m["gain_held"], m["transfer_held"], m["ablation_held"] = gain["held"], transfer["held"], ablation["held"]
    grid = (
        f"α {list(cfg['alpha_grid'])}, β {list(cfg['density_grid'])}, γ {list(cfg['gamma_grid'])}"
        f" ({'per row' if cfg['per_row'] else 'flattened'}); TIES density {list(cfg['ties_density_grid'])}"
    )
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "masking both the largest-magnitude outliers and the negligible entries of each task vector merges many "
            "tasks better than task arithmetic, with hyper-parameters found at few tasks that transfer to more"
        ),
        criterion=(
            f"{cfg['data']['name']} MLP {list(cfg['hidden'])} pre-trained on all {len(cfg['tasks'])} tasks "
            f"({', '.join(cfg['tasks'])}), fine-tuned briefly on each with its own head, backbones merged; normalised "
            f"accuracy (merged / fine-tuned × 100) averaged over all C({len(cfg['tasks'])},k) subsets; every arm's "
            f"hyper-parameters picked at {kt} tasks on validation from one grid ({grid}) and used at {k} tasks; "
            f"seeds {list(cfg['seeds'])}, paired: Breadcrumbs − task arithmetic ≥ {cfg['margin']} pt with the 95 % "
            f"interval above 0, and Breadcrumbs within {cfg['transfer_gap']} pt of its own best grid value at {k} "
            f"tasks (interval of result + {cfg['transfer_gap']} − best above 0)"
        ),
        measured=m,
        held=bool(gain["held"] and transfer["held"]),
        scale=scale,
        notes=(
            "Ablation no_outlier_removal = Breadcrumbs with γ = 0 (plain top-β magnitude masks), tuned the same way; "
            "'ablation_held' says whether removing outliers adds with its interval above 0. Every arm tuned on "
            f"validation at {k} tasks, and the paired difference of the two tuned-at-{k} arms, are reported, "
            "not judged."
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
