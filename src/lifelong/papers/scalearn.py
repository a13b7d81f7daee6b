"""Paper 44: *ScaLearn: Simple and Highly Parameter-Efficient Task Transfer by Learning to Scale* (Frohmann et
al., arXiv 2310.01217). Implemented by :mod:`lifelong.adapters.composition` (:class:`TaskAdapter`,
:class:`ScaLearn`, :class:`ScaLearnUniform`, the shared-across-layers ``++`` variants, :class:`AdapterFusion`).

Claim: combining frozen source adapters by learned scaling (no attention) transfers as well as AdapterFusion and
better than the target's own adapter, with a small fraction of Fusion's transfer parameters. Protocol
(``specs/scalearn.toml``): a frozen MLP on MiniLM features of CLINC150, pre-trained on generic intent data
(HWU64, disjoint from CLINC) so that only the source adapters know the 8 source domains; one
adapter per layer per domain (stage 1; the 2 held-out target domains with 5 examples per intent); stage 2
learns the combination of sources + target adapter and a new head on those examples. Notes and departures:
``docs/papers/scalearn.md``. Run ``lifelong reproduce scalearn [--scale full]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec

#: Stage-2 arms that learn a composition over the frozen adapters (name -> composition kind).
COMPOSED = {
    "fusion": "fusion",
    "scalearn": "scalearn",
    "scalearn_uniform": "scalearn_uniform",
    "scalearn++": "scalearn++",
    "scalearn_uniform++": "scalearn_uniform++",
    "control_random_sources": "scalearn",
}
#: Every arm, in report order (``adapter``: the target's stage-1 adapter alone; ``head_only``: no adapter).
ARMS = ("head_only", "adapter", *COMPOSED)


class AdaptedMLP(nn.Module):
    """A frozen MLP backbone whose hidden layers each take an adapter step chosen per call.

    ``forward(x, step)``: ``step(l, h)`` maps layer ``l``'s post-ReLU hidden state to its adapted state
    (identity when ``step`` is None).
    """

    def __init__(self, dim: int, hidden: list[int]):
        super().__init__()
        dims = [dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.hidden = list(hidden)

    def forward(self, x: torch.Tensor, step=None) -> torch.Tensor:
        """Hidden state of the last layer after the per-layer ``step`` (see the class)."""
        h = x
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h))
            if step is not None:
                h = step(i, h)
        return h


def _batches(n: int, batch_size: int, steps: int, g: torch.Generator):
    """``steps`` index batches drawn epoch by epoch (a fresh permutation each pass)."""
    done = 0
    while done < steps:
        for idx in torch.randperm(n, generator=g).split(batch_size):
            if done == steps:
                return
            done += 1
            yield idx


def _fit(modules: list[nn.Module], logits_of, x, y, lr: float, batches, fusion_reg: float = 0.0) -> None:
    """Adam on the trainable parameters of ``modules``: cross-entropy plus ``fusion_reg`` times the Fusion
    value regulariser (:func:`lifelong.adapters.composition.fusion_regularization`; 0 without a Fusion)."""
    from lifelong.adapters.composition import fusion_regularization

    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    for m in modules:
        m.train()
    for idx in batches:
        loss = nn.functional.cross_entropy(logits_of(x[idx]), y[idx])
        if fusion_reg:
            loss = loss + fusion_reg * fusion_regularization(modules)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for m in modules:
        m.eval()


@torch.no_grad()
def _accuracy(logits_of, x, y) -> float:
    return 100.0 * float((logits_of(x).argmax(1) == y).float().mean())


class Domains:
    """CLINC150 MiniLM features split by domain: per domain (x_train, y_train, x_test, y_test), labels 0..14."""

    def __init__(self, data_cfg: dict):
        from lifelong.adapters.feature import rms_normalize
        from lifelong.papers.common import load_data

        data = load_data(data_cfg)
        self.names = list(data.meta["domain_names"])
        coarse = torch.tensor(data.coarse_labels)
        self.split = {}
        for d, name in enumerate(self.names):
            classes = torch.nonzero(coarse == d).flatten()
            remap = torch.full((data.num_classes,), -1, dtype=torch.long)
            remap[classes] = torch.arange(len(classes))
            tr, te = torch.isin(data.y_train, classes), torch.isin(data.y_test, classes)
            self.split[name] = (
                rms_normalize(data.x_train[tr].float()),
                remap[data.y_train[tr]],
                rms_normalize(data.x_test[te].float()),
                remap[data.y_test[te]],
            )


_HWU64: dict = {}


def hwu64_root():
    """Where the HWU64 CSV files are looked for: ``hwu64/`` under the library's data root (``LIFELONG_DATA``)."""
    from pathlib import Path

    from lifelong.papers.common import clinc_data_root

    return Path(clinc_data_root()) / "hwu64"


def hwu64_available() -> bool:
    """Whether HWU64's ``train.csv`` is on disk under :func:`hwu64_root`."""
    return (hwu64_root() / "train.csv").exists()


def hwu64_features() -> tuple[torch.Tensor, torch.Tensor]:
    """HWU64's training utterances (Liu et al., *Benchmarking Natural Language Understanding Services for building
    Conversational Agents*, arXiv 1903.05566) as MiniLM features rescaled to unit RMS, and their 64 intent labels:
    generic intent data, disjoint from CLINC150, to pre-train the backbone (the stand-in for a generic PLM)."""
    if "train" not in _HWU64:
        from lifelong.adapters.feature import rms_normalize
        from lifelong.data import load_text_file

        root = hwu64_root()
        data = load_text_file(
            root / "train.csv",
            test_path=root / "test.csv",
            label_column="intent",
            coarse_column="scenario",
            name="hwu64",
            progress=False,
        )
        _HWU64["train"] = (rms_normalize(data.x_train.float()), data.y_train.long())
    return _HWU64["train"]


def few_shot(y: torch.Tensor, shots: int, val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``shots`` training and ``val`` validation examples per class of ``y`` (disjoint, seeded)."""
    g = torch.Generator().manual_seed(seed)
    train, valid = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        if len(idx) < shots + val:
            from lifelong.errors import ConfigError

            raise ConfigError(f"class {int(c)} has {len(idx)} examples, fewer than shots + val = {shots + val}")
        train.append(idx[:shots])
        valid.append(idx[shots : shots + val])
    return torch.cat(train), torch.cat(valid)


def _adapters(hidden: list[int], bottleneck: int, seed: int) -> nn.ModuleList:
    from lifelong.adapters.composition import TaskAdapter

    torch.manual_seed(seed)
    return nn.ModuleList(TaskAdapter(d, bottleneck) for d in hidden)


def _single(adapters):
    return lambda i, h: adapters[i](h)


def _composed(comps, adapter_sets):
    from lifelong.adapters.composition import stack_deltas

    return lambda i, h: comps[i](h, stack_deltas([s[i] for s in adapter_sets], h))


def _tune(cfg: dict, build, split: tuple, key: int) -> tuple[float, float, list]:
    """Train ``build() -> (modules, logits)`` for ``cfg["steps"]`` steps at every lr of ``cfg["lr_grid"]`` on
    ``split``'s training examples; keep the lr best on its validation examples (ties: the earlier lr).

    ``split`` is ``(x_train, y_train, x_val, y_val, x_test, y_test)``. Returns (test accuracy, lr, modules).
    """
    xa, ya, xv, yv, xt, yt = split
    best = None
    for k, lr in enumerate(cfg["lr_grid"]):
        torch.manual_seed(key * 10 + k)
        modules, logits = build()
        g = torch.Generator().manual_seed(key * 10 + k)
        batches = _batches(len(ya), cfg["batch_size"], cfg["steps"], g)
        _fit(modules, logits, xa, ya, lr, batches, cfg.get("fusion_reg", 0.0))
        val = _accuracy(logits, xv, yv)
        if best is None or val > best[0]:
            best = (val, lr, modules, logits)
    _, lr, modules, logits = best
    return _accuracy(logits, xt, yt), lr, modules


def run_seed(cfg: dict, seed: int, domains: Domains) -> dict:
    """One seed: backbone, stage-1 adapters, then every arm on every target (lr picked on validation)."""
    from lifelong.adapters.composition import composition_layers, transfer_parameters
    from lifelong.errors import ConfigError

    targets = list(cfg["targets"])
    unknown = [t for t in targets if t not in domains.names]
    if unknown:
        raise ConfigError(f"unknown target domains {unknown}; CLINC150 domains are {domains.names}")
    sources = [d for d in domains.names if d not in targets]
    hidden, bn = list(cfg["hidden"]), cfg["bottleneck"]
    dim = domains.split[sources[0]][0].shape[1]

    # backbone: pre-trained with one head on generic data (HWU64 intents) or on every source intent, then frozen
    torch.manual_seed(seed)
    backbone = AdaptedMLP(dim, hidden)
    pre, g = cfg["pretrain"], torch.Generator().manual_seed(seed)
    if pre.get("data", "sources") == "hwu64":
        xs, ys = hwu64_features()
    elif pre.get("data", "sources") == "sources":
        xs = torch.cat([domains.split[s][0] for s in sources])
        ys = torch.cat([domains.split[s][1] + 15 * i for i, s in enumerate(sources)])
    else:
        raise ConfigError(f"pretrain.data must be 'hwu64' or 'sources', got {pre['data']!r}")
    head = nn.Linear(hidden[-1], int(ys.max()) + 1)
    steps = pre["epochs"] * -(-len(ys) // pre["batch_size"])
    batches = _batches(len(ys), pre["batch_size"], steps, g)
    _fit([backbone, head], lambda x: head(backbone(x)), xs, ys, pre["lr"], batches)
    backbone.requires_grad_(False)

    # stage 1 on the sources: adapters + head per domain, full training data
    st = cfg["source_train"]
    source_sets, source_acc = [], []
    for i, s in enumerate(sources):
        x, y, xt, yt = domains.split[s]
        ads, hd = _adapters(hidden, bn, seed * 1000 + i), nn.Linear(hidden[-1], 15)
        steps = st["epochs"] * -(-len(y) // st["batch_size"])
        logits = lambda x_, a=ads, h_=hd: h_(backbone(x_, _single(a)))
        _fit([ads, hd], logits, x, y, st["lr"], _batches(len(y), st["batch_size"], steps, g))
        source_sets.append(ads.requires_grad_(False))
        source_acc.append(_accuracy(logits, xt, yt))
    random_sets = [_adapters(hidden, bn, seed * 1000 + 500 + i).requires_grad_(False) for i in range(len(sources))]

    out = {"seed": seed, "source_test_acc": float(np.mean(source_acc)), "arms": {}, "chosen_lr": {}, "params": {}}
    per_target = {arm: [] for arm in ARMS}
    for t_index, t in enumerate(targets):
        x, y, xt, yt = domains.split[t]
        key = seed * 100 + t_index
        tr, va = few_shot(y, cfg["shots"], cfg["val_per_intent"], key)
        split = (x[tr], y[tr], x[va], y[va], xt, yt)

        def record(arm, result):
            per_target[arm].append(result[0])
            out["chosen_lr"].setdefault(arm, []).append(result[1])
            return result[2]

        def head_only():
            hd = nn.Linear(hidden[-1], 15)
            return [hd], lambda x_: hd(backbone(x_))

        def adapter_arm(key=key):
            ads, hd = _adapters(hidden, bn, key), nn.Linear(hidden[-1], 15)
            return [ads, hd], lambda x_: hd(backbone(x_, _single(ads)))

        record("head_only", _tune(cfg, head_only, split, key))
        target_set = record("adapter", _tune(cfg, adapter_arm, split, key))[0].requires_grad_(False)

        for arm, kind in COMPOSED.items():
            sets = (random_sets if arm == "control_random_sources" else source_sets) + [target_set]
            kw = (
                {"dropout": cfg["fusion_dropout"]}
                if kind == "fusion"
                else {"init_scale": cfg["omega_init_scale"], "dropout": cfg["omega_dropout"]}
            )

            def build(kind=kind, sets=sets, kw=kw):
                comps, hd = composition_layers(kind, len(sets), hidden, **kw), nn.Linear(hidden[-1], 15)
                return [comps, hd], lambda x_: hd(backbone(x_, _composed(comps, sets)))

            comps = record(arm, _tune(cfg, build, split, key))[0]
            out["params"][arm] = transfer_parameters(comps)
    out["params"]["adapter"] = transfer_parameters(_adapters(hidden, bn, 0))
    out["params"]["head_only"] = 0
    out["arms"] = {arm: float(np.mean(v)) for arm, v in per_target.items()}
    out["per_target"] = {arm: [round(a, 2) for a in v] for arm, v in per_target.items()}
    return out


def judge(runs: list[dict], cfg: dict) -> dict:
    """The verdict from per-seed results ``runs`` (each with ``arms`` accuracies in points and ``params``).

    Paired per seed (95 % t-interval, :func:`lifelong.papers.common.paired`): ScaLearn − Adapter ≥
    ``margin_adapter`` with the interval above 0; ScaLearn + ``margin_fusion`` − Fusion with the interval above 0;
    ScaLearnUniform + ``margin_uniform`` − ScaLearn with the interval above 0; ScaLearn's transfer parameters ≤
    ``max_param_ratio`` × Fusion's; and the control (random sources) must *not* pass the Adapter gate.
    """
    from lifelong.papers.common import paired

    col = lambda arm: [r["arms"][arm] for r in runs]
    shift = lambda arm, m: [a + m for a in col(arm)]
    out = {
        "gain": paired(col("scalearn"), col("adapter"), cfg["margin_adapter"]),
        "vs_fusion": paired(shift("scalearn", cfg["margin_fusion"]), col("fusion")),
        "uniform": paired(shift("scalearn_uniform", cfg["margin_uniform"]), col("scalearn")),
        "control_gain": paired(col("control_random_sources"), col("adapter"), cfg["margin_adapter"]),
        "sources_matter": paired(col("scalearn"), col("control_random_sources")),
    }
    ratio = runs[0]["params"]["scalearn"] / max(runs[0]["params"]["fusion"], 1)
    out["param_ratio"] = ratio
    out["params_held"] = ratio <= cfg["max_param_ratio"]
    out["control_lost_gain"] = not out["control_gain"]["held"]
    out["held"] = bool(
        out["gain"]["held"]
        and out["vs_fusion"]["held"]
        and out["uniform"]["held"]
        and out["params_held"]
        and out["control_lost_gain"]
    )
    return out


_DOMAINS: dict = {}


def reproduce(scale: str = "quick") -> Claim:
    """Run the ScaLearn protocol of ``specs/scalearn.toml`` at ``scale``."""
    return check(load_spec("scalearn", scale), scale)


def check(cfg: dict, scale: str) -> Claim:
    """Measure every seed and judge with :func:`judge`."""
    import json

    from lifelong.papers.common import log_row, paired, paired_measured

    key = json.dumps(cfg["data"], sort_keys=True)
    if key not in _DOMAINS:
        _DOMAINS[key] = Domains(cfg["data"])
    runs = []
    for seed in cfg["seeds"]:
        runs.append(run_seed(cfg, seed, _DOMAINS[key]))
        log_row("scalearn", scale=scale, **runs[-1])
    v = judge(runs, cfg)
    mean = lambda xs: round(float(np.mean(xs)), 2)
    m = {"source adapters test acc (own domain, mean)": mean([r["source_test_acc"] for r in runs])}
    for arm in ARMS:
        m[f"{arm} test acc"] = mean([r["arms"][arm] for r in runs])
        m[f"{arm} per seed"] = "; ".join(f"{r['arms'][arm]:.2f}" for r in runs)
        m[f"{arm} lr chosen (per seed x target)"] = "; ".join(
            ",".join(f"{lr:g}" for lr in r["chosen_lr"][arm]) for r in runs
        )
        m[f"{arm} transfer params"] = runs[0]["params"][arm]
    m["scalearn / fusion transfer params"] = round(v["param_ratio"], 5)
    m.update(paired_measured("scalearn - adapter", v["gain"], 2))
    m.update(paired_measured("scalearn + margin - fusion", v["vs_fusion"], 2))
    m.update(paired_measured("scalearn_uniform + margin - scalearn", v["uniform"], 2))
    m.update(paired_measured("control - adapter", v["control_gain"], 2))
    m.update(paired_measured("scalearn - control", v["sources_matter"], 2))
    adapter = [r["arms"]["adapter"] for r in runs]
    for arm in ("scalearn++", "scalearn_uniform++", "head_only"):
        m.update(paired_measured(f"{arm} - adapter", paired([r["arms"][arm] for r in runs], adapter), 2))
    m["gain_held"], m["fusion_held"] = v["gain"]["held"], v["vs_fusion"]["held"]
    m["uniform_held"] = v["uniform"]["held"]
    m["params_held"], m["control_lost_gain"] = v["params_held"], v["control_lost_gain"]
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "learning to scale the outputs of frozen source adapters (plus the target's own) transfers better than "
            "the target adapter alone and as well as AdapterFusion, with a small fraction of its parameters"
        ),
        criterion=(
            f"CLINC150 MiniLM features, MLP {list(cfg['hidden'])} pre-trained on "
            f"{'HWU64 intents' if cfg['pretrain'].get('data', 'sources') == 'hwu64' else 'the 8 source domains'} "
            "and frozen; "
            f"bottleneck-{cfg['bottleneck']} adapters per layer; targets {list(cfg['targets'])} with {cfg['shots']} "
            f"examples per intent; every arm {cfg['steps']} Adam steps, lr picked on {cfg['val_per_intent']} "
            f"validation examples per intent from {list(cfg['lr_grid'])}; seeds {list(cfg['seeds'])}, paired 95 % "
            f"intervals: ScaLearn − Adapter ≥ {cfg['margin_adapter']} (interval above 0), ScaLearn − Fusion > "
            f"−{cfg['margin_fusion']}, ScaLearnUniform − ScaLearn > −{cfg['margin_uniform']} (intervals), ScaLearn "
            f"transfer params ≤ {cfg['max_param_ratio']:.0%} of Fusion's, and ScaLearn over untrained random source "
            "adapters does not pass the Adapter gate"
        ),
        measured=m,
        held=v["held"],
        scale=scale,
        notes=(
            "Accuracy in points on CLINC's test examples of the target domains (mean over targets). ScaLearn++ / "
            "ScaLearnUniform++ (scales shared across layers) and head only (frozen backbone + new head) are "
            "reported, not judged. Transfer params exclude the 15-way head every arm trains."
        ),
    )


PAPER = Paper(
    number=44,
    short_name="scalearn",
    title="ScaLearn: Simple and Highly Parameter-Efficient Task Transfer by Learning to Scale",
    category="PEFT/adapter",
    status="claim checked",
    implemented_by=("lifelong.adapters.composition",),
    arxiv="2310.01217",
    reproduce=reproduce,
)
