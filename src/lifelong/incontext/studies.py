"""The study registry: a task family's name -> its prompt sampler, model and reference learners, with settings.

A *study* is one task family of :mod:`lifelong.incontext.tasks` with a small default model and the metrics it is
read by. :func:`build_study` turns a name and ``key=value`` settings into a :class:`BuiltStudy`; the training and
evaluation front end on top of it is :mod:`lifelong.incontext.report` (``lifelong incontext train/eval``).

- ``linear``: noisy linear regression (*What learning algorithm is in-context learning? Investigations with linear
  models*, arXiv 2211.15661); squared error by prompt position against OLS, ridge, k-step GD, averaging, kNN.
- ``boolean``: a Boolean function class (*Understanding In-Context Learning in Transformers and LLMs by Learning to
  Learn Discrete Functions*, arXiv 2310.03016); accuracy by position against elimination, nearest neighbour,
  majority label and, for sparse parity, the version-space vote and the no-context Bayes rule.
- ``bursty``: bursty / Zipfian item-label sequences (*The mechanistic basis of data dependence and abrupt learning
  in an in-context classification task*, arXiv 2312.03002); query accuracy in the in-context (novel classes),
  swapped-label and in-weights modes, and the induction-head probe.
- ``dual-process``: novel / known tokens (*Dual Process Learning: Controlling Use of In-Context vs. In-Weights
  Strategies with Weight Forgetting*, arXiv 2406.00053); query accuracy on held-out tokens, switched roles and rare
  tokens; optional active / temporary forgetting of the token embeddings.
- ``projection``: GPICL random projection tasks over scikit-learn's digits (*General-Purpose In-Context Learning by
  Meta-Learning Transformers*, arXiv 2212.04458); accuracy by position on unseen tasks over held-out digits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from lifelong.errors import ConfigError, unknown_name
from lifelong.incontext.prompts import Prompts
from lifelong.incontext.train import Sampler

__all__ = ["Study", "BuiltStudy", "STUDIES", "list_studies", "get_study", "parse_settings", "resolve_settings"]

#: settings every study takes (model shape, evaluation and optimisation details beyond --steps/--lr/--batch/--seed)
COMMON = {
    "model": "transformer",  # or "lstm" (PromptLSTM, paired tokens; no attention maps)
    "d_model": 32,
    "layers": 2,
    "heads": 4,
    "lstm_hidden": 64,
    "eval_every": 0,  # 0: about 10 evaluations over the run
    "eval_prompts": 256,
    "checkpoint_every": 0,  # 0: only at the end
    "schedule": None,
    "warmup_steps": 0,
    "grad_clip": 0.0,
    "weight_decay": 0.0,
}
#: settings given by their own option (--steps, --lr, --batch, --seed), not by --set
OPTIONS = ("steps", "lr", "batch", "seed")


@dataclass(frozen=True)
class Study:
    """One task family: its help line, the metric it is read by and its defaults.

    Attributes:
        name: the registry name (``lifelong incontext train NAME``).
        summary: one line of help.
        metric: ``"mse"`` (lower is better) or ``"accuracy"``.
        per_position: whether the loss reads every position (else the query only: metrics by evaluation mode).
        defaults: the study's own settings (``--set key=value``) with their defaults, on top of :data:`COMMON`.
        training: defaults of ``steps``, ``lr``, ``batch`` and overrides of :data:`COMMON`.
    """

    name: str
    summary: str
    metric: str
    per_position: bool
    defaults: Mapping[str, object]
    training: Mapping[str, object] = field(default_factory=dict)

    def all_defaults(self) -> dict:
        """Every setting with its default: :data:`COMMON`, the study's keys and its training defaults."""
        return {**COMMON, **dict(self.defaults), **dict(self.training)}


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "linear",
            "noisy linear regression y = w.x + noise (arXiv 2211.15661); MSE vs OLS / ridge / GD / kNN",
            "mse",
            True,
            {"d": 4, "n_points": 12, "noise": 0.5, "gd_steps": 1, "gd_lr": 0.5, "knn_k": 3},
            {"steps": 500, "lr": 3e-3, "batch": 64},
        ),
        Study(
            "boolean",
            "a Boolean function class, --set function=conjunction|sparse_parity|... (arXiv 2310.03016)",
            "accuracy",
            True,
            {"function": "conjunction", "n_dims": 10, "n_points": 30, "force": None, "k": None},
            {"steps": 500, "lr": 3e-3, "batch": 32, "grad_clip": 1.0},
        ),
        Study(
            "bursty",
            "bursty / Zipfian item-label sequences: in-context vs in-weights classification (arXiv 2312.03002)",
            "accuracy",
            False,
            {
                "num_classes": 512,
                "num_labels": 16,
                "dim": 32,
                "context": 8,
                "burstiness": 4,
                "eps": 0.1,
                "alpha": 0.0,
                "p_bursty": 1.0,
                "eval_burstiness": 4,
                "readout_hidden": 128,
                "attention_only": True,
            },
            {"steps": 500, "lr": 3e-3, "batch": 64, "d_model": 64, "heads": 1},
        ),
        Study(
            "dual-process",
            "novel vs known tokens: the query word's role in a sentence, with optional forgetting (arXiv 2406.00053)",
            "accuracy",
            False,
            {
                "vocab": 1000,
                "zipf": 1.2,
                "prop_amb": 0.1,
                "tail_fraction": 0.1,
                "forgetting": "none",  # "active" | "temporary"
                "forget_every": 50,
                "forget_until": 0,  # temporary forgetting stops here; 0 = half the steps
            },
            {"steps": 500, "lr": 1e-3, "batch": 64, "d_model": 64},
        ),
        Study(
            "projection",
            "GPICL: digits under random projections and label permutations (arXiv 2212.04458)",
            "accuracy",
            True,
            {"n_points": 20, "num_tasks": None, "d_proj": None, "bias_fraction": 0.0, "scale": "variance"},
            {"steps": 500, "lr": 1e-3, "batch": 64, "d_model": 64},
        ),
    )
}


def list_studies() -> list[str]:
    """The study names, in registry order."""
    return list(STUDIES)


def get_study(name: str) -> Study:
    """The :class:`Study` called ``name`` (``dual_process`` is read as ``dual-process``); unknown -> ConfigError."""
    key = str(name).replace("_", "-")
    if key not in STUDIES:
        raise unknown_name("in-context study", name, STUDIES)
    return STUDIES[key]


def _value(text: str):
    """A ``--set`` value: JSON when it parses (numbers, true/false, null, lists), ``none`` -> None, else the text."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def parse_settings(items: Sequence[str] | None) -> dict:
    """``["key=value", ...]`` -> ``{key: value}`` (values as by :func:`_value`); malformed items -> ConfigError."""
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _value(value)
    return out


#: the type of the settings whose default is ``None``
_NONE_TYPES = {"schedule": "", "force": 0.0, "k": 0, "num_tasks": 0, "d_proj": 0}


def _coerce(study: Study, key: str, value: object, default: object) -> object:
    """``value`` as the type of ``default`` (ints stay ints, numbers become floats for float keys)."""
    default = _NONE_TYPES.get(key, default) if default is None else default
    if value is None or default is None:
        return value
    kind = type(default)
    ok = (
        isinstance(value, kind)
        and not (kind is int and isinstance(value, bool))
        or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
    )
    if not ok:
        raise ConfigError(f"setting {key} of study {study.name} takes a value of type {kind.__name__}, got {value!r}")
    return kind(value)


def resolve_settings(name: str, settings: Mapping | Sequence[str] | None = None, **options) -> dict:
    """The complete settings of study ``name``: its defaults, then ``settings`` (a dict or ``key=value`` strings),
    then ``options`` (``steps``, ``lr``, ``batch``, ``seed``; ``None`` keeps the default).

    Raises:
        ConfigError: an unknown study, an unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    study = get_study(name)
    given = parse_settings(settings) if not isinstance(settings, Mapping) else dict(settings or {})
    defaults = {**study.all_defaults(), "seed": 0}
    for key in given:
        if key in OPTIONS:
            raise ConfigError(f"{key} is an option, not a setting: give --{key} {given[key]} (or {key}=... in Python)")
        if key not in defaults:
            valid = sorted(k for k in defaults if k not in OPTIONS)
            raise ConfigError(f"unknown setting {key!r} for study {study.name}; choose one of: {', '.join(valid)}")
    out = dict(defaults)
    for key, value in {**given, **{k: v for k, v in options.items() if v is not None}}.items():
        if key not in defaults:
            raise ConfigError(f"unknown option {key!r}; the options are {', '.join(OPTIONS)}")
        out[key] = _coerce(study, key, value, defaults[key])
    if out["model"] not in ("transformer", "lstm"):
        raise ConfigError(f"setting model must be 'transformer' or 'lstm', got {out['model']!r}")
    out["study"] = study.name
    return out


@dataclass
class BuiltStudy:
    """What :func:`build_study` assembles.

    Attributes:
        study: the :class:`Study`.
        settings: the resolved settings.
        sampler: the training sampler (``sample(batch, generator) -> Prompts``).
        model: the prompt model, initialised from ``settings["seed"]``.
        eval_sets: evaluation prompts by name (fixed: drawn from seed ``10_000 + seed``); the first is the main one,
            read over training and by prompt position.
        references: reference learners by name, each ``fn(prompts) -> [batch, n_points]`` predictions (regression
            values or ±1 scores), for the main evaluation set.
        hooks: ``on_step`` hooks of the training loop (forgetting schedules).
        chance: the accuracy of guessing (``None`` for regression).
    """

    study: Study
    settings: dict
    sampler: object
    model: torch.nn.Module
    eval_sets: dict[str, Prompts]
    references: dict[str, Callable[[Prompts], torch.Tensor]]
    hooks: list = field(default_factory=list)
    chance: float | None = None


def _model(s: dict, d_x: int, d_out: int, kind: str, max_points: int, **extra) -> torch.nn.Module:
    from lifelong.incontext.models import PromptLSTM, PromptTransformer

    torch.manual_seed(int(s["seed"]))
    if s["model"] == "lstm":
        extra.pop("attention_only", None)
        extra.pop("tokens", None)
        return PromptLSTM(d_x, d_out, kind, d_model=s["d_model"], hidden=s["lstm_hidden"], layers=s["layers"], **extra)
    return PromptTransformer(
        d_x, d_out, kind, d_model=s["d_model"], layers=s["layers"], heads=s["heads"], max_points=max_points, **extra
    )


def _draw(sampler: Sampler, count: int, seed: int) -> Prompts:
    return sampler.sample(count, torch.Generator().manual_seed(seed))


def _linear(s: dict, eval_seed: int) -> BuiltStudy:
    from lifelong.incontext import references as R
    from lifelong.incontext.tasks.linear import LinearRegression

    sampler = LinearRegression(d=s["d"], n_points=s["n_points"], noise=s["noise"])
    refs = {
        "ols": R.ols,
        "gd": lambda p: R.gd_steps(p, steps=s["gd_steps"], lr=s["gd_lr"]),
        "averaging": R.averaging,
        "knn": lambda p: R.knn(p, k=s["knn_k"]),
    }
    if s["noise"] > 0:
        refs["ridge"] = lambda p: R.ridge(p, lam=s["noise"] ** 2)
    model = _model(s, s["d"], 1, "regression", s["n_points"])
    return BuiltStudy(
        STUDIES["linear"], s, sampler, model, {"test": _draw(sampler, s["eval_prompts"], eval_seed)}, refs
    )


def _boolean(s: dict, eval_seed: int) -> BuiltStudy:
    from math import comb

    from lifelong.incontext import references as R
    from lifelong.incontext.tasks.boolean import BooleanFunctions

    sampler = BooleanFunctions(s["function"], n_dims=s["n_dims"], n_points=s["n_points"], force=s["force"], k=s["k"])
    f = s["function"]
    refs = {"nearest_neighbour": R.nearest_neighbour, "majority_label": R.majority_label}
    if f == "conjunction":
        refs["elimination"] = R.elimination
    elif f in ("disjunction", "sparse_disjunction"):
        refs["elimination"] = lambda p: R.elimination(p, dual=True)
    elif f == "sparse_parity" and comb(s["n_dims"], sampler.k) <= 2000:
        refs["parity_vote"] = lambda p: R.sparse_parity_vote(p, k=sampler.k)
        refs["parity_prior"] = lambda p: R.sparse_parity_prior(p, k=sampler.k)
    model = _model(s, s["n_dims"], 1, "binary", s["n_points"])
    return BuiltStudy(
        STUDIES["boolean"], s, sampler, model, {"test": _draw(sampler, s["eval_prompts"], eval_seed)}, refs, chance=0.5
    )


def _bursty(s: dict, eval_seed: int) -> BuiltStudy:
    from lifelong.incontext.tasks.bursty import BurstyClassification

    sampler = BurstyClassification(
        num_classes=s["num_classes"],
        num_labels=s["num_labels"],
        dim=s["dim"],
        context=s["context"],
        burstiness=s["burstiness"],
        eps=s["eps"],
        alpha=s["alpha"],
        p_bursty=s["p_bursty"],
        eval_burstiness=s["eval_burstiness"],
        seed=int(s["seed"]),
    )
    evals = {
        m: _draw(sampler.with_mode(m), s["eval_prompts"], eval_seed + i) for i, m in enumerate(("icl", "ic2", "iwl"))
    }
    model = _model(
        s,
        s["dim"],
        s["num_labels"],
        "classes",
        s["context"] + 1,
        readout_hidden=s["readout_hidden"],
        **({"attention_only": s["attention_only"]} if s["model"] == "transformer" else {}),
    )
    chance = s["eval_burstiness"] / s["context"]  # guessing one of the context's labels
    return BuiltStudy(STUDIES["bursty"], s, sampler, model, evals, {}, chance=chance)


def _dual_process(s: dict, eval_seed: int) -> BuiltStudy:
    from lifelong.incontext.forgetting import EmbeddingReset
    from lifelong.incontext.tasks.dual_process import DualProcessTask

    if s["forgetting"] not in ("none", "active", "temporary"):
        raise ConfigError(f"setting forgetting must be none, active or temporary, got {s['forgetting']!r}")
    sampler = DualProcessTask(
        vocab=s["vocab"], zipf=s["zipf"], prop_amb=s["prop_amb"], tail_fraction=s["tail_fraction"], seed=int(s["seed"])
    )
    modes = ("holdout", "train", "switch", "tail", "tail_switch")
    evals = {m: _draw(sampler.with_mode(m), s["eval_prompts"], eval_seed + i) for i, m in enumerate(modes)}
    hooks = []
    if s["forgetting"] == "active":
        hooks.append(EmbeddingReset(s["forget_every"], until=s["steps"]))
    elif s["forgetting"] == "temporary":
        hooks.append(EmbeddingReset(s["forget_every"], until=s["forget_until"] or s["steps"] // 2))
    model = _model(s, 1, 2, "classes", 4, tokens="paired", x_vocab=sampler.num_tokens)
    return BuiltStudy(STUDIES["dual-process"], s, sampler, model, evals, {}, hooks, chance=0.5)


def _projection(s: dict, eval_seed: int) -> BuiltStudy:
    from lifelong.data import load_digits
    from lifelong.incontext.tasks.projection import ProjectionTasks

    data = load_digits(seed=int(s["seed"]))
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    common = {"n_points": s["n_points"], "d_proj": s["d_proj"], "scale": s["scale"], "num_classes": 10}
    sampler = ProjectionTasks(xtr, ytr, num_tasks=s["num_tasks"], bias_fraction=s["bias_fraction"], **common)
    test = ProjectionTasks(xte, yte, **common)  # unseen tasks, held-out digits
    model = _model(s, sampler.d_proj, 10, "classes", s["n_points"], tokens="paired")
    return BuiltStudy(
        STUDIES["projection"], s, sampler, model, {"test": _draw(test, s["eval_prompts"], eval_seed)}, {}, chance=0.1
    )


_BUILDERS = {
    "linear": _linear,
    "boolean": _boolean,
    "bursty": _bursty,
    "dual-process": _dual_process,
    "projection": _projection,
}


def build_study(settings: Mapping) -> BuiltStudy:
    """The sampler, model (initialised from ``settings["seed"]``), evaluation prompts and references of resolved
    ``settings`` (from :func:`resolve_settings`; they name the study)."""
    s = dict(settings)
    return _BUILDERS[get_study(s["study"]).name](s, 10_000 + int(s["seed"]))
