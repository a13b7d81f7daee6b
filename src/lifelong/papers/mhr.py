"""Paper 13: *Multi-Head Adapter Routing for Cross-Task Generalization* (Caccia, Ponti, Su, Pereira, Le Roux,
Sordoni; NeurIPS 2023, arXiv 2211.03831). Implemented by :mod:`lifelong.adapters.poly` (routed LoRA skill
inventories: Poly with one routing head, MHR with several; MHR-z and MHR-μ few-shot modes).

Claim: multi-head routing (MHR) adapts to unseen tasks from few examples better than Poly at the same parameter
budget; tuning only the routing logits (MHR-z) stays competitive; the average of MHR's skills (MHR-μ) is a better
single adapter to fine-tune than a multitask-trained shared LoRA. Protocol (``specs/mhr.toml``): a frozen random MLP
body and head; 12 regression tasks, each the head plus a weighted sum of 2 of 4 latent low-rank linear skills on
the body's features; multitask pre-training of each routed head; few-shot fine-tuning on 5 held-out combinations.
Notes and departures: ``docs/papers/mhr.md``. Run ``lifelong reproduce mhr [--scale full]``.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
from torch import nn

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec

#: Few-shot arms, in report order.
ARMS = ("shared_lora", "shared_lora_wide", "poly", "mhr", "mhr_z", "mhr_mu", "control_uniform_routing")


class Head(nn.Module):
    """The adapted part of the model: one frozen ``nn.Linear`` (``head``) on the frozen body's features."""

    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.head = nn.Linear(hidden, out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The head's output for features ``h``."""
        return self.head(h)


class Toy:
    """One seed's synthetic multitask regression problem.

    A frozen random MLP body ``φ`` (ReLU layers ``hidden``) and head ``W0``; 4 latent skills ``U_k`` (rank
    ``skill_rank``, d_out × hidden). Task ``t`` with skill pair ``(a, b)`` and weights ``(w_a, w_b)`` has target
    ``y = W0 φ(x) + b0 + (w_a U_a + w_b U_b) φ(x) + noise``. ``heldout_pairs`` of the 6 skill pairs are held out:
    training tasks cycle through the other pairs (which use every skill) with fresh weights; held-out tasks cycle
    through the held-out pairs (new combinations of seen skills) with fresh weights.
    """

    def __init__(self, cfg: dict, seed: int):
        g = torch.Generator().manual_seed(seed)
        d_in, hid, d_out = cfg["d_in"], cfg["hidden"], cfg["d_out"]
        layers: list[nn.Module] = []
        dim = d_in
        torch.manual_seed(seed)
        for _ in range(cfg["body_layers"]):
            layers += [nn.Linear(dim, hid), nn.ReLU()]
            dim = hid
        self.body = nn.Sequential(*layers).requires_grad_(False)
        self.head = Head(hid, d_out).requires_grad_(False)
        with torch.no_grad():
            probe = self.body(torch.randn(2000, d_in, generator=g))
        scale = float(probe.norm(dim=1).mean())
        k, rank = cfg["n_latent"], cfg["skill_rank"]
        p = torch.randn(k, d_out, rank, generator=g)
        q = torch.randn(k, rank, hid, generator=g)
        self.skills = cfg["skill_scale"] * (p @ q) / (scale * np.sqrt(rank))
        pairs = list(itertools.combinations(range(k), 2))
        n_train, n_held, n_hp = cfg["n_train_tasks"], cfg["n_heldout_tasks"], cfg["heldout_pairs"]
        if not 1 <= n_hp < len(pairs):
            raise ValueError(f"heldout_pairs must be in [1, {len(pairs) - 1}], got {n_hp}")
        while True:  # held-out pairs never seen in training; the training pairs still use every latent skill
            perm = [pairs[int(i)] for i in torch.randperm(len(pairs), generator=g)]
            held_pairs, train_pairs = perm[:n_hp], perm[n_hp:]
            if {j for pair in train_pairs for j in pair} == set(range(k)):
                break
        order = [train_pairs[i % len(train_pairs)] for i in range(n_train)]
        held = [held_pairs[i % n_hp] for i in range(n_held)]
        self.train_pairs, self.heldout_pairs = sorted(set(order)), sorted(set(held))
        lo, hi = cfg["weight_range"]
        self.tasks = []
        for pair in order + held:
            w = lo + (hi - lo) * torch.rand(2, generator=g)
            self.tasks.append((pair, w))
        self.n_train = n_train
        self.noise = cfg["noise_std"]
        self.d_in, self.g = d_in, g

    def task_matrix(self, t: int) -> torch.Tensor:
        """The task's skill update ``w_a U_a + w_b U_b`` (d_out × hidden)."""
        (a, b), w = self.tasks[t]
        return w[0] * self.skills[a] + w[1] * self.skills[b]

    @torch.no_grad()
    def sample(self, t: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` examples of task ``t``: (body features, targets)."""
        h = self.body(torch.randn(n, self.d_in, generator=self.g))
        y = (
            self.head(h)
            + h @ self.task_matrix(t).T
            + self.noise * torch.randn(n, self.head.head.out_features, generator=self.g)
        )
        return h, y


def make_model(toy: Toy, n_skills: int, n_splits: int, cfg: dict, seed: int, r: int | None = None) -> nn.Module:
    """A copy of the toy's frozen head with a routed LoRA inventory (``n_skills``, ``n_splits``, rank ``r``,
    default ``cfg["r"]``) injected."""
    from lifelong.adapters.poly import PolyConfig, inject_poly

    model = copy.deepcopy(toy.head)
    config = PolyConfig(
        r=r or cfg["r"], n_skills=n_skills, n_splits=n_splits, n_tasks=toy.n_train, target_modules=["head"]
    )
    inject_poly(model, config, seed=seed)
    return model


def _optimizer(params_ab: list, params_z: list, lr_ab: float, lr_z: float) -> torch.optim.Optimizer:
    groups = [{"params": params_ab, "lr": lr_ab}] if params_ab else []
    groups += [{"params": params_z, "lr": lr_z}] if params_z else []
    return torch.optim.Adam(groups)


def _split_params(model: nn.Module) -> tuple[list, list]:
    from lifelong.adapters.poly import routing_parameters

    z = [p for p in routing_parameters(model) if p.requires_grad]
    ab = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in z)]
    return ab, z


def pretrain(model: nn.Module, toy: Toy, data: list, cfg: dict, seed: int, mode: str = "full") -> None:
    """Multitask pre-training on every training task: mini-batches mixing tasks, task ids per example.

    ``mode`` is passed to :func:`lifelong.adapters.poly.set_poly_mode`: ``"full"``, ``"mu"`` for the single shared
    LoRA, ``"adapters"`` (routing frozen at its near-uniform start) for the control.
    """
    from lifelong.adapters.poly import poly_forward, set_poly_mode

    opt_cfg = cfg["pretrain"]
    set_poly_mode(model, mode)
    ab, z = _split_params(model)
    opt = _optimizer(ab, z, opt_cfg["adapter_lr"], opt_cfg["routing_lr"])
    h = torch.cat([d[0] for d in data])
    y = torch.cat([d[1] for d in data])
    ids = torch.cat([torch.full((len(d[0]),), t) for t, d in enumerate(data)])
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(opt_cfg["steps"]):
        idx = torch.randint(len(y), (opt_cfg["batch_size"],), generator=g)
        loss = nn.functional.mse_loss(poly_forward(model, h[idx], ids[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@torch.no_grad()
def mse(model: nn.Module, h: torch.Tensor, y: torch.Tensor, task_id: int) -> float:
    """Mean squared error of ``model`` on ``(h, y)`` routed as ``task_id``."""
    from lifelong.adapters.poly import poly_forward

    model.eval()
    return float(nn.functional.mse_loss(poly_forward(model, h, [task_id] * len(h)), y))


def finetune(
    pretrained: nn.Module, mode: str, shots, val, test, lr: float | None, lr_z: float | None, cfg: dict, seed: int
) -> tuple:
    """Few-shot fine-tuning of a copy of ``pretrained`` on one held-out task: ``(val MSE, test MSE, trainable)``.

    The task gets a fresh routing-logit row (near-uniform). ``mode`` is ``full`` (inventory at ``lr``, logits at
    ``lr_z``), ``z`` (logits only, at ``lr_z``) or ``mu`` (the averaged single adapter at ``lr``).
    """
    from lifelong.adapters.poly import add_poly_tasks, poly_forward, set_poly_mode, trainable_count

    model = copy.deepcopy(pretrained)
    (task,) = add_poly_tasks(model, 1, seed=seed)
    set_poly_mode(model, mode)
    ab, z = _split_params(model)
    opt = _optimizer(ab, z, lr, lr_z)
    h, y = shots
    ids = [task] * len(h)
    model.train()
    for _ in range(cfg["fewshot"]["steps"]):
        loss = nn.functional.mse_loss(poly_forward(model, h, ids), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mse(model, *val, task), mse(model, *test, task), trainable_count(model, [task])


def tune(pretrained: nn.Module, mode: str, splits: list, cfg: dict, seeds: list[int]) -> dict:
    """Pick the learning rates of one few-shot arm on validation, from the one grid ``cfg["lr_grid"]``.

    ``mu``: the adapter lr; ``z``: the routing-logit lr; ``full``: both, by coordinate search — the adapter lr at
    the paper's logit lr ``fewshot.routing_lr`` (which must be on the grid), then the logit lr at that adapter lr.
    The score is the mean validation MSE over the held-out tasks (same steps for every arm); returned: the test MSE
    at the picked lrs (mean over tasks), the lrs, whether a pick sits at the grid's edge, the trainable count.
    """
    grid = list(cfg["lr_grid"])
    cache: dict = {}

    def evaluate(lr, lr_z):
        if (lr, lr_z) not in cache:
            cache[(lr, lr_z)] = [
                finetune(pretrained, mode, *split, lr, lr_z, cfg, s) for split, s in zip(splits, seeds, strict=True)
            ]

    def best():
        return min(cache, key=lambda k: (float(np.mean([r[0] for r in cache[k]])), k[0] or 0.0, k[1] or 0.0))

    if mode == "z":
        for lr in grid:
            evaluate(None, lr)
    elif mode == "mu":
        for lr in grid:
            evaluate(lr, None)
    else:
        z0 = cfg["fewshot"]["routing_lr"]
        if z0 not in grid:
            raise ValueError(f"fewshot.routing_lr={z0} must be on lr_grid {grid}")
        for lr in grid:
            evaluate(lr, z0)
        lr_ab = best()[0]
        for lr in grid:
            evaluate(lr_ab, lr)
    lr, lr_z = best()
    runs = cache[(lr, lr_z)]
    edge = {grid[0], grid[-1]}
    return {
        "lr": lr,
        "lr_z": lr_z,
        "at_edge": bool(lr in edge or lr_z in edge),
        "val": float(np.mean([r[0] for r in runs])),
        "test": float(np.mean([r[1] for r in runs])),
        "trainable": runs[0][2],
    }


def run_seed(cfg: dict, seed: int) -> dict:
    """Pre-train the five models of one seed, then fine-tune every arm on each held-out task (lrs by :func:`tune`)."""
    toy = Toy(cfg, seed)
    train_data = [toy.sample(t, cfg["pretrain"]["examples_per_task"]) for t in range(toy.n_train)]
    held = range(toy.n_train, len(toy.tasks))
    fs = cfg["fewshot"]
    splits = {t: (toy.sample(t, fs["shots"]), toy.sample(t, fs["val"]), toy.sample(t, fs["test"])) for t in held}
    s, q = cfg["n_skills"], cfg["heads"]
    models = {
        "shared": make_model(toy, 1, 1, cfg, seed),
        "shared_wide": make_model(toy, 1, 1, cfg, seed, r=cfg["shared_wide_r"]),
        "poly": make_model(toy, s, 1, cfg, seed),
        "mhr": make_model(toy, s, q, cfg, seed),
        "uniform": make_model(toy, s, q, cfg, seed),
    }
    pretrain(models["shared"], toy, train_data, cfg, seed, mode="mu")
    pretrain(models["shared_wide"], toy, train_data, cfg, seed, mode="mu")
    pretrain(models["poly"], toy, train_data, cfg, seed)
    pretrain(models["mhr"], toy, train_data, cfg, seed)
    pretrain(models["uniform"], toy, train_data, cfg, seed, mode="adapters")
    arms = {
        "shared_lora": ("shared", "mu"),
        "shared_lora_wide": ("shared_wide", "mu"),
        "poly": ("poly", "full"),
        "mhr": ("mhr", "full"),
        "mhr_z": ("mhr", "z"),
        "mhr_mu": ("mhr", "mu"),
        "control_uniform_routing": ("uniform", "full"),
    }
    out: dict = {"seed": seed}
    out["pretrain_train_mse"] = {
        k: float(np.mean([mse(m, *train_data[t], t) for t in range(toy.n_train)])) for k, m in models.items()
    }
    out["no_adaptation_test_mse"] = float(
        np.mean([float(nn.functional.mse_loss(toy.head(splits[t][2][0]), splits[t][2][1])) for t in held])
    )
    for arm, (base, mode) in arms.items():
        out[arm] = tune(models[base], mode, [splits[t] for t in held], cfg, [seed * 100 + t for t in held])
    return out


def _fmt(lr) -> str:
    return "-" if lr is None else f"{lr:g}"


def reproduce(scale: str = "quick") -> Claim:
    """Run the MHR protocol of ``specs/mhr.toml`` at ``scale``."""
    return check(load_spec("mhr", scale), scale)


def verdict(runs: list[dict], z_factor: float = 1.5) -> dict:
    """The paired verdicts over seeds (lower MSE is better; each 95 % interval must lie above 0).

    ``mhr_vs_poly``: Poly − MHR; ``z_within``: z_factor·MHR − MHR-z; ``mu_vs_shared``: shared LoRA − MHR-μ;
    ``control``: Poly − (MHR pre-trained with frozen uniform routing), which must not hold;
    ``mhr_vs_shared_wide`` (reported only): shared LoRA at Poly's parameter budget − MHR.
    """
    from lifelong.papers.common import paired

    col = lambda arm: [r[arm]["test"] for r in runs]
    return {
        "mhr_vs_poly": paired(col("poly"), col("mhr")),
        "z_within": paired([z_factor * v for v in col("mhr")], col("mhr_z")),
        "mu_vs_shared": paired(col("shared_lora"), col("mhr_mu")),
        "control": paired(col("poly"), col("control_uniform_routing")),
        "mhr_vs_shared_wide": paired(col("shared_lora_wide"), col("mhr")) if "shared_lora_wide" in runs[0] else None,
    }


def check(cfg: dict, scale: str, run=run_seed) -> Claim:
    """Measure every seed with ``run(cfg, seed)`` and judge the three claims (plus the control that must fail)."""
    from lifelong.papers.common import log_row, paired_measured

    runs = []
    for seed in cfg["seeds"]:
        runs.append(run(cfg, seed))
        log_row("mhr", scale=scale, **runs[-1])
    v = verdict(runs, cfg["z_factor"])
    mean = lambda xs: round(float(np.mean(xs)), 5)
    m: dict = {}
    if "no_adaptation_test_mse" in runs[0]:
        m["frozen head, no adapter: held-out test MSE"] = mean([r["no_adaptation_test_mse"] for r in runs])
        for k in runs[0]["pretrain_train_mse"]:
            m[f"pre-training MSE ({k})"] = mean([r["pretrain_train_mse"][k] for r in runs])
    for arm in ARMS:
        m[f"{arm} few-shot test MSE"] = mean([r[arm]["test"] for r in runs])
        m[f"{arm} trainable params"] = runs[0][arm].get("trainable", "")
        m[f"{arm} lr (per seed)"] = "; ".join(_fmt(r[arm].get("lr")) for r in runs)
        m[f"{arm} logit lr (per seed)"] = "; ".join(_fmt(r[arm].get("lr_z")) for r in runs)
        m[f"{arm} picks at the grid edge"] = sum(bool(r[arm].get("at_edge")) for r in runs)
    m.update(paired_measured("poly - mhr", v["mhr_vs_poly"], 5))
    m.update(paired_measured(f"{cfg['z_factor']}*mhr - mhr_z", v["z_within"], 5))
    m.update(paired_measured("shared_lora - mhr_mu", v["mu_vs_shared"], 5))
    m.update(paired_measured("control: poly - mhr(uniform-routing pretrain)", v["control"], 5))
    m["mhr_le_poly_held"] = v["mhr_vs_poly"]["held"]
    m["mhr_z_within_held"] = v["z_within"]["held"]
    m["mhr_mu_le_shared_held"] = v["mu_vs_shared"]["held"]
    if v["mhr_vs_shared_wide"] is not None:
        m.update(paired_measured("reported: shared_lora_wide - mhr", v["mhr_vs_shared_wide"], 5))
    m["control_failed_as_expected"] = not v["control"]["held"]
    fs = cfg["fewshot"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "multi-head routing of a LoRA skill inventory (MHR) generalises to unseen tasks from few examples better "
            "than Poly at the same parameter budget; training only the routing (MHR-z) is competitive; the average of "
            "MHR's skills (MHR-mu) is a better single adapter to fine-tune than a multitask shared LoRA"
        ),
        criterion=(
            f"toy: {cfg['n_train_tasks']} regression tasks = frozen random MLP + weighted pair of {cfg['n_latent']} "
            f"latent rank-{cfg['skill_rank']} linear skills; {cfg['n_skills']} skills of rank {cfg['r']} on the head, "
            f"MHR with {cfg['heads']} heads; few-shot ({fs['shots']} examples, {fs['steps']} Adam steps) on "
            f"{cfg['n_heldout_tasks']} held-out tasks on {cfg['heldout_pairs']} skill pairs never seen in training; "
            f"each arm's lrs (adapter and, where it trains, routing logit) from {list(cfg['lr_grid'])} on "
            f"{fs['val']} validation examples per held-out task; seeds {list(cfg['seeds'])}, paired 95 % intervals "
            f"above 0 for: Poly − MHR, {cfg['z_factor']}·MHR − MHR-z, shared LoRA − MHR-mu (test MSE); gated by the "
            "control (Poly − MHR pre-trained with frozen uniform routing) NOT holding"
        ),
        measured=m,
        held=bool(
            v["mhr_vs_poly"]["held"]
            and v["z_within"]["held"]
            and v["mu_vs_shared"]["held"]
            and m["control_failed_as_expected"]
        ),
        scale=scale,
        notes=(
            "Control (must fail; the verdict needs it to fail): MHR pre-trained with its routing frozen at uniform, "
            "then fine-tuned like MHR, judged against Poly the same way; 'control_failed_as_expected' says it did not "
            "beat Poly. Poly/MHR/control train the inventory and the new task's logits; MHR-mu and the shared LoRA "
            f"train one rank-{cfg['r']} adapter (matched); shared_lora_wide (rank {cfg['shared_wide_r']}) matches "
            "Poly's budget and is reported only."
        ),
    )


PAPER = Paper(
    number=13,
    short_name="mhr",
    title="Multi-Head Adapter Routing for Cross-Task Generalization",
    category="PEFT/adapter",
    status="claim checked",
    implemented_by=("lifelong.adapters.poly",),
    arxiv="2211.03831",
    reproduce=reproduce,
)
