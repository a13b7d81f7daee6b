"""Train a study, evaluate a saved one, and draw its plots: the engine of ``lifelong incontext train / eval``.

:func:`train_study` builds a study of :mod:`lifelong.incontext.studies`, trains it with
:func:`lifelong.incontext.train.train` (safetensors checkpoints, resume) and writes into ``out``:

- ``study.json``: the resolved settings (what :func:`evaluate_study` rebuilds the model from);
- ``checkpoint/state.{json,safetensors}``: the training loop's checkpoint (model, optimizer, RNG, step, history);
- ``metrics.json``: the training loss of every step, the evaluations over training and the final evaluation
  (loss and metric by prompt position for the model and the study's reference learners, or by evaluation mode);
- ``position.png`` (metric vs prompt position, model vs references) or ``modes.png`` (query accuracy by evaluation
  mode, for the studies that score the query only), ``training.png`` (loss and metric vs training step) and, for a
  transformer, ``attention.png`` (its attention on one evaluation prompt, every layer and head).

:func:`evaluate_study` reloads the checkpoint, re-evaluates it on the same fixed prompts (the numbers equal the saved
ones on one machine) and redraws the plots.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lifelong.errors import ConfigError
from lifelong.fileio import atomic_write_bytes, atomic_write_json
from lifelong.incontext.prompts import Prompts
from lifelong.incontext.studies import BuiltStudy, build_study, get_study, resolve_settings
from lifelong.incontext.train import History, TrainConfig, predict, prompt_loss, train

__all__ = [
    "StudyRun",
    "train_study",
    "evaluate_study",
    "evaluate_model",
    "plot_study",
    "plot_position",
    "plot_modes",
    "plot_training",
    "plot_attention",
    "summary_line",
    "train_config",
]

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SETTINGS_FILE, METRICS_FILE = "study.json", "metrics.json"


@dataclass
class StudyRun:
    """The outcome of :func:`train_study` / :func:`evaluate_study`.

    Attributes:
        settings: the resolved settings; model: the trained model (eval mode); metrics: what ``metrics.json`` holds;
        out: the output folder (``None`` when nothing was written); files: the files written.
    """

    settings: dict
    model: torch.nn.Module
    metrics: dict
    out: Path | None = None
    files: list[Path] = field(default_factory=list)


# -- metrics ------------------------------------------------------------------------------------------------------
def _hits(pred: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """Per-prompt, per-position hits of model outputs or reference scores."""
    if prompts.kind == "binary":
        return (torch.where(pred > 0, 1.0, -1.0) == prompts.ys.float()).float()
    return (pred.argmax(-1) == prompts.ys.long()).float()


def _per_position(pred: torch.Tensor, prompts: Prompts) -> list[float]:
    if prompts.kind == "regression":
        return [float(v) for v in ((pred.double() - prompts.ys.double()) ** 2).mean(0)]
    return [float(v) for v in _hits(pred, prompts).mean(0)]


def _query_accuracy(pred: torch.Tensor, prompts: Prompts) -> float:
    return float(_hits(pred, prompts)[:, -1].mean())


def _training_eval(built: BuiltStudy) -> Callable[[torch.nn.Module, int], dict]:
    """``eval_fn`` of the training loop: loss and the main metric (at the query) on every evaluation set."""
    metric = built.study.metric

    def fn(model: torch.nn.Module, step: int) -> dict:
        row = {}
        for i, (name, prompts) in enumerate(built.eval_sets.items()):
            out = predict(model, prompts)
            value = _per_position(out, prompts)[-1] if metric == "mse" else _query_accuracy(out, prompts)
            if i == 0:
                row["loss"] = float(prompt_loss(out, prompts))
                row[metric] = value
            if not built.study.per_position:
                row[f"{name}_{metric}"] = value
        return row

    return fn


def evaluate_model(built: BuiltStudy, model: torch.nn.Module | None = None) -> dict:
    """The final evaluation of ``model`` (default ``built.model``) on the study's fixed prompts.

    Returns ``{"loss", "metric", "per_position": {learner: [value per position]}, "summary": {...}}``;
    per-position studies hold the model and every reference learner (``per_position[name][i]`` is the metric at
    the ``i``-th point, with ``i`` examples before it); query-only studies hold the model's query accuracy by
    evaluation mode in ``summary`` (and, for a bursty transformer, the induction-head probe).
    """
    model = built.model if model is None else model
    study, sets = built.study, built.eval_sets
    main_name, main = next(iter(sets.items()))
    out = predict(model, main)
    res: dict = {"loss": float(prompt_loss(out, main)), "metric": study.metric, "per_position": {}, "summary": {}}
    if study.per_position:
        res["per_position"]["model"] = _per_position(out, main)
        for name, ref in built.references.items():
            res["per_position"][name] = _per_position(ref(main), main)
        for name, values in res["per_position"].items():
            res["summary"][f"{name}_last"] = values[-1]
            res["summary"][f"{name}_mean"] = sum(values) / len(values)
    else:
        for name, prompts in sets.items():
            res["summary"][f"{name}_accuracy"] = _query_accuracy(predict(model, prompts), prompts)
        if study.name == "bursty" and getattr(model, "tokens", None) == "interleaved":
            from lifelong.incontext.attention_probes import induction_probe

            probe = induction_probe(model, main)
            res["summary"].update({f"probe_{k}": v for k, v in probe.items()})
    if built.chance is not None:
        res["summary"]["chance"] = built.chance
    return res


# -- plots --------------------------------------------------------------------------------------------------------
def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())


def _label(metric: str) -> str:
    return "mean squared error" if metric == "mse" else "accuracy"


def plot_position(evaluation: Mapping, path: str | Path, title: str = "", chance: float | None = None) -> Path:
    """Metric vs prompt position (examples before the query), the model bold and each reference learner thin."""
    fig, ax = _figure(6.4, 4.2)
    ax = ax[0][0]
    for name, values in evaluation["per_position"].items():
        ax.plot(range(len(values)), values, lw=2.5 if name == "model" else 1.2, label=name, marker="o", ms=3)
    if chance is not None:
        ax.axhline(chance, ls="--", c="grey", lw=1, label="chance")
    ax.set_xlabel("in-context examples before the query")
    ax.set_ylabel(_label(evaluation["metric"]))
    if evaluation["metric"] == "mse":
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_modes(evaluation: Mapping, path: str | Path, title: str = "", chance: float | None = None) -> Path:
    """Query accuracy by evaluation mode (bars), for the studies that score the query only."""
    modes = {k[: -len("_accuracy")]: v for k, v in evaluation["summary"].items() if k.endswith("_accuracy")}
    fig, ax = _figure(6.4, 4.2)
    ax = ax[0][0]
    bars = ax.bar(list(modes), list(modes.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    if chance is not None:
        ax.axhline(chance, ls="--", c="grey", lw=1, label="chance")
        ax.legend(fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("query accuracy")
    ax.set_xlabel("evaluation prompts")
    ax.set_title(title)
    return _save(fig, Path(path))


def plot_training(metrics: Mapping, path: str | Path, title: str = "") -> Path:
    """Training loss per step (with a running mean) and the evaluations' metric vs training step."""
    fig, axes = _figure(10.0, 4.0, 1, 2)
    left, right = axes[0]
    losses = metrics["train"]["loss"]
    steps = list(range(1, len(losses) + 1))
    left.plot(steps, losses, lw=0.6, alpha=0.5, label="per step")
    w = max(1, len(losses) // 50)
    if w > 1:
        run = torch.tensor(losses, dtype=torch.float64).unfold(0, w, 1).mean(1).tolist()
        left.plot(steps[w - 1 :], run, lw=1.5, label=f"mean of {w}")
    left.set_xlabel("training step")
    left.set_ylabel("training loss")
    left.set_yscale("log")
    left.legend(fontsize=8)
    metric = metrics["eval"]["metric"]
    evals = metrics["history"]
    keys = [k for k in (evals[0] if evals else {}) if k.endswith(f"_{metric}")] or [metric]
    for key in keys:
        rows = [e for e in evals if key in e]
        right.plot([e["step"] for e in rows], [e[key] for e in rows], marker="o", ms=3, label=key)
    right.set_xlabel("training step")
    right.set_ylabel(f"evaluation {_label(metric)}" + (" (last position)" if metric == "mse" else " (query)"))
    right.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, Path(path))


def plot_attention(model: torch.nn.Module, prompts: Prompts, path: str | Path, title: str = "") -> Path:
    """The attention of a :class:`PromptTransformer` on the first of ``prompts``: one panel per layer and head."""
    was = model.training
    model.eval()
    with torch.no_grad():
        _, maps = model(prompts.select(slice(0, 1)), return_attention=True)
    model.train(was)
    layers, heads = len(maps), int(maps[0].shape[1])
    fig, axes = _figure(2.6 * heads + 0.6, 2.5 * layers + 0.4, layers, heads)
    t = int(maps[0].shape[-1])
    if getattr(model, "tokens", "interleaved") == "interleaved":
        names = [f"{'xy'[i % 2]}{i // 2 + 1}" for i in range(t)]
    else:
        names = [f"t{i + 1}" for i in range(t)]
    for li, layer in enumerate(maps):
        for h in range(heads):
            ax = axes[li][h]
            im = ax.imshow(layer[0, h].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {li + 1}, head {h + 1}", fontsize=8)
            if t <= 24:
                ax.set_xticks(range(t), names, fontsize=5, rotation=90)
                ax.set_yticks(range(t), names, fontsize=5)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.colorbar(im, ax=[a for row in axes for a in row], shrink=0.8, label="attention (row: from, column: to)")
    fig.suptitle(title)
    return _save(fig, Path(path))


def plot_study(built: BuiltStudy, model: torch.nn.Module, metrics: Mapping, out: str | Path) -> list[Path]:
    """Every plot of a study into folder ``out`` (see the module docstring); returns the files written."""
    out = Path(out)
    s = built.settings
    title = f"{s['study']} ({s['model']}, {s['steps']} steps, seed {s['seed']})"
    ev = metrics["eval"]
    files = [
        plot_position(ev, out / "position.png", title, built.chance)
        if built.study.per_position
        else plot_modes(ev, out / "modes.png", title, built.chance)
    ]
    files.append(plot_training(metrics, out / "training.png", title))
    if hasattr(model, "blocks"):  # a transformer: its attention on one prompt of the main evaluation set
        files.append(plot_attention(model, next(iter(built.eval_sets.values())), out / "attention.png", title))
    return files


# -- the front end ------------------------------------------------------------------------------------------------
def train_config(s: Mapping) -> TrainConfig:
    """The :class:`TrainConfig` of resolved study settings (``eval_every`` 0: about ten evaluations per run)."""
    every = s["eval_every"] or max(1, s["steps"] // 10)
    return TrainConfig(
        steps=s["steps"],
        batch=s["batch"],
        lr=s["lr"],
        schedule=s["schedule"],
        warmup_steps=s["warmup_steps"],
        grad_clip=s["grad_clip"],
        weight_decay=s["weight_decay"],
        eval_every=every,
        checkpoint_every=s["checkpoint_every"],
        seed=int(s["seed"]),
    )


def _metrics(settings: Mapping, history: History, evaluation: dict) -> dict:
    return {
        "study": settings["study"],
        "settings": dict(settings),
        "train": {"loss": list(history.losses)},
        "history": list(history.evals),
        "eval": evaluation,
    }


def train_study(
    study: str,
    *,
    steps: int | None = None,
    lr: float | None = None,
    batch: int | None = None,
    seed: int | None = None,
    settings: Mapping | Sequence[str] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    plots: bool = True,
    on_step: Callable | list[Callable] | None = None,
) -> StudyRun:
    """Train the in-context study ``study`` and, with ``out``, write its checkpoint, metrics and plots.

    Args:
        study: a name of :data:`lifelong.incontext.studies.STUDIES` (``linear``, ``boolean``, ``bursty``,
            ``dual-process``, ``projection``).
        steps, lr, batch, seed: training length, learning rate, prompts per step, seed (``None``: the study's
            default).
        settings: the study's other settings, a dict or ``"key=value"`` strings (``function=sparse_parity``,
            ``model=lstm``, ``eval_every=50``...; :func:`lifelong.incontext.studies.resolve_settings` lists them).
        out: the output folder (see :mod:`lifelong.incontext.report`); nothing is written without it.
        resume: continue the run in ``out`` from its last checkpoint (the settings must be the same); the result
            equals an uninterrupted run's.
        progress: a progress bar on a terminal; plots: draw the PNGs.
        on_step: extra hooks ``hook(model, step)`` after every optimizer step.

    Raises:
        ConfigError: an unknown study or setting, a bad value, ``out`` holding another run (without ``resume``) or
        a run with other settings.

    Example:
        >>> run = train_study("linear", steps=200, out="runs/icl-linear")  # doctest: +SKIP
        >>> run.metrics["eval"]["summary"]["model_last"]  # doctest: +SKIP
    """
    s = resolve_settings(study, settings, steps=steps, lr=lr, batch=batch, seed=seed)
    folder = Path(out) if out is not None else None
    if folder is not None:
        stored = folder / SETTINGS_FILE
        if stored.exists():
            old = _read_json(stored)
            if not resume:
                raise ConfigError(
                    f"{folder} already holds a run of study {old.get('study')!r}; continue it with --resume "
                    "(resume=True) or choose another --out"
                )
            if old != s:
                diff = ", ".join(
                    f"{k}={old.get(k)!r} (now {s.get(k)!r})"
                    for k in sorted(set(old) | set(s))
                    if old.get(k) != s.get(k)
                )
                raise ConfigError(
                    f"the run in {folder} was started with other settings: {diff}; resume with the same ones"
                )
    built = build_study(s)  # refuses bad values before anything is written
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / SETTINGS_FILE, s)
    hooks = list(built.hooks)
    if on_step is not None:
        hooks += list(on_step) if isinstance(on_step, (list, tuple)) else [on_step]
    history = train(
        built.model,
        built.sampler,
        train_config(s),
        eval_fn=_training_eval(built),
        on_step=hooks,
        out_dir=folder,
        resume=resume,
        progress=progress,
    )
    metrics = _metrics(s, history, evaluate_model(built))
    run = StudyRun(s, built.model, metrics, folder)
    if folder is not None:
        run.files.append(atomic_write_json(folder / METRICS_FILE, metrics))
        if plots:
            run.files += plot_study(built, built.model, metrics, folder)
    return run


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path} ({e}); train the study again into a new --out") from e


def _run_folder(path: str | Path) -> Path:
    """The run folder of ``path`` (the folder itself, or the parent of its ``checkpoint`` subfolder)."""
    p = Path(path)
    if not (p / SETTINGS_FILE).exists() and p.name == "checkpoint" and (p.parent / SETTINGS_FILE).exists():
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"no run folder {p}; train one with `lifelong incontext train STUDY --out {p}`")
    if not (p / SETTINGS_FILE).exists():
        raise ConfigError(
            f"{p} holds no {SETTINGS_FILE}: not a folder written by `lifelong incontext train` (give its --out)"
        )
    ckpt = p / "checkpoint"
    if not (ckpt / "state.json").exists() or not (ckpt / "state.safetensors").exists():
        raise ConfigError(
            f"no checkpoint in {ckpt} (expected state.json and state.safetensors); train or resume the run first"
        )
    return p


def evaluate_study(
    path: str | Path, *, study: str | None = None, out: str | Path | None = None, plots: bool = True
) -> StudyRun:
    """Re-evaluate the checkpoint of a run folder written by :func:`train_study` and redraw its plots.

    Args:
        path: the run folder (``--out`` of the training) or its ``checkpoint`` subfolder.
        study: when given, the study the run must be of (a check).
        out: where ``metrics.json`` and the plots go (default ``path``); the training history is kept.

    Returns the :class:`StudyRun`; ``metrics["eval"]`` equals the saved one on the machine that trained it (same
    fixed prompts, same weights).

    Raises:
        ConfigError: no run folder, no checkpoint, or a run of another study.
    """
    from lifelong.evaluation.checkpoint import load_checkpoint

    folder = _run_folder(path)
    s = _read_json(folder / SETTINGS_FILE)
    if study is not None and get_study(study).name != s.get("study"):
        raise ConfigError(f"{folder} holds a run of study {s.get('study')!r}, not {get_study(study).name!r}")
    s = resolve_settings(
        s["study"],
        {k: v for k, v in s.items() if k not in ("study", "steps", "lr", "batch", "seed")},
        steps=s["steps"],
        lr=s["lr"],
        batch=s["batch"],
        seed=s["seed"],
    )
    built = build_study(s)
    state, _ = load_checkpoint(folder / "checkpoint")
    built.model.load_state_dict(state["model"])
    built.model.eval()
    hist = state.get("history", {})
    history = History(list(hist.get("losses", [])), list(hist.get("evals", [])))
    metrics = _metrics(s, history, evaluate_model(built))
    metrics["checkpoint_step"] = int(state["step"])
    dest = Path(out) if out is not None else folder
    dest.mkdir(parents=True, exist_ok=True)
    run = StudyRun(s, built.model, metrics, dest)
    run.files.append(atomic_write_json(dest / METRICS_FILE, metrics))
    if plots:
        run.files += plot_study(built, built.model, metrics, dest)
    return run


def summary_line(run: StudyRun) -> str:
    """One line: the study, the checkpoint step and the model's main numbers."""
    ev = run.metrics["eval"]
    sm = ev["summary"]
    if "model_last" in sm:
        what = (
            f"{ev['metric']} at the last position {sm['model_last']:.4g} (mean over positions {sm['model_mean']:.4g})"
        )
        refs = [k[: -len("_last")] for k in sm if k.endswith("_last") and k != "model_last"]
        if refs:
            what += "; " + ", ".join(f"{r} {sm[r + '_last']:.4g}" for r in refs)
    else:
        what = "query accuracy " + ", ".join(
            f"{k[: -len('_accuracy')]} {v:.3f}" for k, v in sm.items() if k.endswith("_accuracy")
        )
    return f"{run.settings['study']}: loss {ev['loss']:.4g}; {what}"
