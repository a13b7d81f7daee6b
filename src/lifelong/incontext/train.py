"""One training loop for prompt models: sample prompts, step, evaluate, checkpoint, resume.

:func:`train` draws a fresh batch from a sampler (``sampler.sample(batch, generator)``) every step, minimises the
kind's loss at every position (MSE, BCE on ``(y + 1) / 2``, cross-entropy), calls ``on_step`` hooks (forgetting
schedules) and ``eval_fn`` every ``eval_every`` steps, and writes safetensors + JSON checkpoints holding the model,
optimizer, schedule, sampler generator, global RNG, step and history, so that a resumed run ends with the same
numbers as an uninterrupted one. :func:`per_position_accuracy` / :func:`per_position_error` are the metrics by prompt
position.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from lifelong.errors import CheckpointError, ConfigError, NonFiniteLossError
from lifelong.incontext.prompts import Prompts

__all__ = [
    "Sampler",
    "TrainConfig",
    "History",
    "train",
    "prompt_loss",
    "predict",
    "per_position_accuracy",
    "per_position_error",
]


class Sampler(Protocol):
    """Anything that draws a batch of prompts from a generator."""

    def sample(self, batch: int, generator: torch.Generator) -> Prompts: ...


@dataclass
class TrainConfig:
    """Settings of :func:`train`.

    Attributes:
        steps: optimizer steps.
        batch: prompts per step (fresh prompts every step).
        lr: learning rate; ``optimizer`` a name of :func:`lifelong.optim.build_optimizer` (``adam``, ``adamw``, ...).
        weight_decay: passed to the optimizer.
        schedule: ``None`` (constant) or a :func:`lifelong.optim.build_schedule` name (``linear``, ``cosine``...).
        warmup_steps: warm-up of the schedule.
        grad_clip: max global gradient norm, ``0`` for none.
        loss_positions: ``"all"`` (every position, the default of the studies) or ``"last"`` (the query only).
        eval_every: call ``eval_fn`` at step 0, every ``eval_every`` steps and at the end; 0 = only at the end.
        checkpoint_every: write a checkpoint every this many steps (and at the end) when ``out_dir`` is set.
        seed: seeds the sampler's generator and the global RNG at the start of the run.
    """

    steps: int = 1000
    batch: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str | None = None
    warmup_steps: int = 0
    grad_clip: float = 0.0
    loss_positions: str = "all"
    eval_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0

    def validate(self) -> None:
        """Refuse impossible settings with one message naming the fix."""
        if self.steps < 1 or self.batch < 1:
            raise ConfigError(f"steps and batch must be >= 1, got steps={self.steps}, batch={self.batch}")
        if self.loss_positions not in ("all", "last"):
            raise ConfigError(f"loss_positions must be 'all' or 'last', got {self.loss_positions!r}")
        if self.eval_every < 0 or self.checkpoint_every < 0 or self.grad_clip < 0:
            raise ConfigError("eval_every, checkpoint_every and grad_clip must be >= 0")


@dataclass
class History:
    """What a run recorded: the training loss of every step and the ``eval_fn`` results (each with its ``step``)."""

    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)

    def curve(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of eval metric ``key`` over training."""
        rows = [e for e in self.evals if key in e]
        return [int(e["step"]) for e in rows], [e[key] for e in rows]


def prompt_loss(out: torch.Tensor, prompts: Prompts, positions: str = "all") -> torch.Tensor:
    """The kind's loss of predictions ``out`` on ``prompts`` (mean over the positions read).

    Regression: squared error; binary: BCE of ``sigmoid(logit)`` against ``(y + 1) / 2`` (the Boolean study's
    loss); classes: cross-entropy. ``positions="last"`` reads only the query; a ``"loss_mask"`` tag restricts the
    positions further.
    """
    if prompts.kind == "regression":
        per = (out - prompts.ys.float()) ** 2
    elif prompts.kind == "binary":
        per = F.binary_cross_entropy_with_logits(out, (prompts.ys.float() + 1) / 2, reduction="none")
    else:
        per = F.cross_entropy(out.transpose(1, 2), prompts.ys.long(), reduction="none")
    mask = torch.ones_like(per, dtype=torch.bool)
    if positions == "last":
        mask[:, :-1] = False
    if "loss_mask" in prompts.extra:
        mask = mask & prompts.extra["loss_mask"].bool()
    return (per * mask).sum() / mask.sum().clamp_min(1)


def _accepts_optimizer(fn: Callable) -> bool:
    try:
        return "optimizer" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _state(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: object,
    generator: torch.Generator,
    step: int,
    history: History,
) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "schedule": sched.state_dict() if sched is not None else None,
        "generator": generator.get_state(),
        "rng": torch.get_rng_state(),
        "step": step,
        "history": {"losses": history.losses, "evals": history.evals},
    }


def train(
    model: torch.nn.Module,
    sampler: Sampler,
    config: TrainConfig,
    *,
    loss: Callable[[torch.Tensor, Prompts], torch.Tensor] | None = None,
    eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    on_step: Callable | list[Callable] | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> History:
    """Train ``model`` on prompts from ``sampler`` for ``config.steps`` steps; returns the :class:`History`.

    Args:
        loss: ``loss(predictions, prompts) -> scalar``; default :func:`prompt_loss` at ``config.loss_positions``.
        eval_fn: ``eval_fn(model, step) -> dict`` of JSON numbers, called in eval mode without gradients.
        on_step: hook(s) ``on_step(model, step)`` called after each optimizer step (steps count from 1); a hook
            with a parameter named ``optimizer`` also gets the optimizer (to reset its moments).
        out_dir: where checkpoints go (``out_dir/checkpoint/state.{json,safetensors}``); none without it.
        resume: continue from the checkpoint in ``out_dir`` when there is one (same config required).
        progress: show a tqdm bar (on a terminal only).

    Raises:
        ConfigError: bad settings; NonFiniteLossError: the loss became NaN/inf; CheckpointError: resuming a run
        whose checkpoint has another config, or a corrupt checkpoint.
    """
    from lifelong.evaluation.checkpoint import load_checkpoint, save_checkpoint
    from lifelong.optim import build_optimizer, build_schedule
    from lifelong.runtime import progress as progress_bar

    config.validate()
    hooks = [] if on_step is None else (list(on_step) if isinstance(on_step, (list, tuple)) else [on_step])
    loss_fn = loss or (lambda out, p: prompt_loss(out, p, config.loss_positions))
    opt = build_optimizer(
        config.optimizer, model.parameters(), lr=config.lr, momentum=0.0, weight_decay=config.weight_decay
    )
    sched = (
        build_schedule(config.schedule, opt, config.steps, warmup_steps=config.warmup_steps)
        if config.schedule
        else None
    )
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    history, start = History(), 0
    ckpt = Path(out_dir) / "checkpoint" if out_dir is not None else None
    if resume and ckpt is not None and (ckpt / "state.json").exists():
        state, meta = load_checkpoint(ckpt)
        if meta.get("config") != asdict(config):
            raise CheckpointError(
                f"the checkpoint in {ckpt} was written with another config ({meta.get('config')}); "
                "resume with the same settings or use another out_dir"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
        history = History(list(state["history"]["losses"]), list(state["history"]["evals"]))

    def evaluate(step: int) -> None:
        if eval_fn is None or any(e["step"] == step for e in history.evals):
            return
        was = model.training
        model.eval()
        with torch.no_grad():
            row = dict(eval_fn(model, step))
        model.train(was)
        history.evals.append({"step": step, **row})

    def save(step: int) -> None:
        if ckpt is not None:
            save_checkpoint(ckpt, _state(model, opt, sched, generator, step, history), {"config": asdict(config)})

    if start == 0 and config.eval_every:
        evaluate(0)
    model.train()
    bar = progress_bar(config.steps, "in-context training") if progress else None
    if bar is not None:
        bar.update(start)
    try:
        for step in range(start + 1, config.steps + 1):
            prompts = sampler.sample(config.batch, generator)
            value = loss_fn(model(prompts), prompts)
            if not torch.isfinite(value):
                raise NonFiniteLossError(
                    f"the training loss is {value.item()} at step {step}; lower lr (now {config.lr}) or clip gradients"
                )
            opt.zero_grad(set_to_none=True)
            value.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            for hook in hooks:
                hook(model, step, optimizer=opt) if _accepts_optimizer(hook) else hook(model, step)
            history.losses.append(float(value.detach()))
            if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
                evaluate(step)
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps:
                save(step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history.losses[-1]:.4f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict(model: torch.nn.Module, prompts: Prompts, chunk: int = 1024) -> torch.Tensor:
    """``model``'s predictions on ``prompts`` in eval mode, ``chunk`` prompts at a time."""
    was = model.training
    model.eval()
    outs = [model(prompts.select(slice(i, i + chunk))) for i in range(0, prompts.batch, chunk)]
    model.train(was)
    return torch.cat(outs)


def per_position_accuracy(model: torch.nn.Module, prompts: Prompts) -> torch.Tensor:
    """Accuracy at every prompt position ``[n_points]`` (sign of the logit for binary, argmax for classes)."""
    out = predict(model, prompts)
    if prompts.kind == "binary":
        hit = torch.where(out > 0, 1.0, -1.0) == prompts.ys.float()
    elif prompts.kind == "classes":
        hit = out.argmax(-1) == prompts.ys.long()
    else:
        raise ConfigError("per_position_accuracy needs binary or class prompts; use per_position_error for regression")
    return hit.float().mean(0)


def per_position_error(model: torch.nn.Module, prompts: Prompts, normalise: bool = False) -> torch.Tensor:
    """Mean squared error at every prompt position ``[n_points]`` (divided by ``d_x`` with ``normalise``)."""
    out = predict(model, prompts)
    err = ((out - prompts.ys.float()) ** 2).mean(0)
    return err / prompts.d_x if normalise else err
