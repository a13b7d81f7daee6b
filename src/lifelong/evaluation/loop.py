"""``run(stream, learner)``: learn each experience, test on all, record costs, checkpoint."""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lifelong.data.dataset import data_input_kind, require_finite
from lifelong.errors import CheckpointError, ConfigError, DataError, LearnerError, LifelongError, NonFiniteLossError
from lifelong.evaluation.checkpoint import load_checkpoint, save_checkpoint
from lifelong.evaluation.io import append_jsonl, atomic_write_json
from lifelong.evaluation.result import Result
from lifelong.methods.registry import check_inputs
from lifelong.scenarios import Stream

if TYPE_CHECKING:
    from lifelong.methods.base import Learner

EVAL_BATCH = 2048
MAX_SEED = 2**32 - 1  # numpy's and Python's generators all take seeds in [0, 2**32)


def peak_memory_mb() -> float:
    """Peak resident set size of this process in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def check_seed(seed: int) -> int:
    """``seed`` as an int in ``[0, 2**32)``; a :class:`ConfigError` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"seeds must be integers in [0, {MAX_SEED}], got {seed!r}; pick e.g. --seeds 0,1,2")
    return int(seed)


def accuracy(
    learner: Learner, x: torch.Tensor, y: torch.Tensor, task_id: int | None, num_classes: int | None = None
) -> float:
    """Fraction of ``(x, y)`` the learner classifies right (predictions in batches).

    Predictions are checked: a shape other than ``(batch, v)`` with ``v <= num_classes``
    (when given) or a NaN score raises :class:`LearnerError` (``-inf`` marks classes a
    learner cannot predict and is allowed).
    """
    correct = 0
    name = type(learner).__name__
    for s in range(0, len(y), EVAL_BATCH):
        scores = learner.predict(x[s : s + EVAL_BATCH], task_id=task_id)
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[0] != len(x[s : s + EVAL_BATCH]):
            raise LearnerError(
                f"{name}.predict returned shape {tuple(getattr(scores, 'shape', ()))}; expected (batch, classes)"
            )
        if num_classes is not None and scores.shape[1] > num_classes:
            raise LearnerError(
                f"{name}.predict returned {scores.shape[1]} score columns but the stream has "
                f"{num_classes} classes; return one column per class id seen so far"
            )
        if scores.shape[1] == 0:
            continue
        if scores.is_floating_point() and bool(torch.isnan(scores).any()):
            raise LearnerError(f"{name}.predict returned NaN scores (its weights or statistics diverged)")
        correct += int((scores.argmax(1) == y[s : s + EVAL_BATCH]).sum())
    return correct / max(len(y), 1)


def divergence_hint(learner: Learner) -> str:
    """The settings to look at when ``learner`` diverged: real-valued ones changed from their defaults, else lr."""
    import dataclasses

    config = getattr(learner, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return "lower the learning rate or check the inputs"
    kind = getattr(config, "data_kind", None)
    try:
        if kind is None:
            default = type(config)()
        else:
            from lifelong.methods.config import build_config

            default = build_config(type(config), data_kind=kind)
    except (TypeError, ValueError):
        return "lower the learning rate or check the inputs"
    changed = [
        (f.name, getattr(config, f.name), getattr(default, f.name))
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name) and isinstance(getattr(config, f.name), float)
    ]
    if changed:
        on = f" on {kind} data" if kind else ""
        shown = ", ".join(f"method.{k}={v:g} (default {d:g}{on})" for k, v, d in changed)
        return f"settings changed from their defaults, the likely cause: {shown}; move them back toward the defaults"
    lr = getattr(config, "lr", None)
    return f"lower method.lr (now {lr:g})" if isinstance(lr, (int, float)) else "check the inputs and settings"


def _counts(learner: Learner) -> tuple[int, int]:
    f = getattr(learner, "parameter_counts", None)
    return f() if f is not None else (0, 0)


def _check_representation(stream: Stream, learner: Learner, method: str) -> None:
    """Refuse a stream whose kind of input (feature vectors, token ids) the learner does not read.

    A learner declares what it reads (``inputs``, see :func:`lifelong.methods.check_inputs`);
    one without a registered config is not checked.
    """
    config = getattr(learner, "config", None)
    if config is None or getattr(type(learner), "name", None) is None:
        return
    check_inputs(
        data_input_kind(stream[0].dataset),
        {type(learner).name: config},
        error=DataError,
        data_fix={
            "features": "load the data with representation='features' (the default)",
            "tokens": "load the data with representation='tokens'",
        },
        set_prefix="",
    )


def run(
    stream: Stream,
    learner: Learner,
    *,
    seed: int = 0,
    method: str | None = None,
    config: dict | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Result:
    """Train ``learner`` on each experience of ``stream`` in order and evaluate on every test set.

    Fills ``R[i, j]`` (accuracy on experience j after learning experience i) and the
    costs. With ``run_dir``, writes ``metrics.jsonl`` (one line per experience),
    ``results.json`` (atomically, after every experience) and a checkpoint of the
    learner, the RNG states and the stream position. ``resume=True`` continues from
    that checkpoint and ends with the same numbers as an uninterrupted run.

    Inputs must be finite (:class:`DataError` otherwise) and predictions are checked
    (:func:`accuracy`). A NaN/inf loss or NaN predictions stop the run:
    ``results.json`` keeps the finished experiences with ``status: failed`` and an error
    naming the settings to look at (:func:`divergence_hint`), and the error is re-raised.
    Resuming a run whose checkpoint is complete rewrites its ``results.json``;
    ``metrics.jsonl`` is cut back to the checkpoint's experiences.
    """
    if len(stream) == 0:
        raise DataError("the stream has no experiences")
    seed = check_seed(seed)
    method = method or getattr(learner, "name", type(learner).__name__)
    _check_representation(stream, learner, method)
    config = config if config is not None else (learner.config.to_dict() if hasattr(learner, "config") else {})
    T = len(stream)
    run_dir = Path(run_dir) if run_dir is not None else None
    tests = [e.test_tensors() for e in stream]
    for e, (x, _) in zip(stream, tests):
        require_finite(x, f"the test split of experience {e.index}")
    K = stream.num_classes
    result = Result(
        method, seed, stream.describe(), config, np.zeros((0, T)), np.zeros(T), data_info=_data_info(stream)
    )
    start = 0
    if resume and run_dir is not None and (run_dir / "checkpoints" / "state.json").exists():
        start = _restore(run_dir, stream, learner, result)
    else:
        torch.manual_seed(seed)
        random.seed(seed)
        prepare = getattr(learner, "prepare", None)
        if prepare is not None:
            prepare(stream[0].input_shape, stream.num_classes)
        result.initial_accuracy = np.array([accuracy(learner, x, y, e.task_id, K) for e, (x, y) in zip(stream, tests)])
        if run_dir is not None and (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()
    bar = _progress(T, start, f"{method} seed{seed}", progress)
    failure: type[LifelongError] = NonFiniteLossError
    try:
        for i in range(start, T):
            exp = stream[i]
            require_finite(exp.train_tensors()[0], f"the training split of experience {i}")
            t0 = time.perf_counter()
            try:
                learner.learn(exp)
                t1 = time.perf_counter()
                row = np.array([accuracy(learner, x, y, e.task_id, K) for e, (x, y) in zip(stream, tests)])
            except (NonFiniteLossError, LearnerError) as e:
                result.status, result.error = "failed", f"{e}; {divergence_hint(learner)}"
                failure = type(e)
                break
            t2 = time.perf_counter()
            result.accuracy_matrix = np.vstack([result.accuracy_matrix, row[None]])
            result.learn_seconds.append(t1 - t0)
            result.eval_seconds.append(t2 - t1)
            result.samples_seen.append(int(getattr(learner, "samples_seen", 0)))
            result.trainable_parameters, result.total_parameters = _counts(learner)
            result.peak_memory_mb = peak_memory_mb()
            if i == T - 1:
                result.status = "complete"
            if run_dir is not None:
                _record(run_dir, result, learner, i)
            bar.update(1)
            bar.set_postfix(acc=f"{100 * row[: i + 1].mean():.1f}%")
    finally:
        bar.close()
    if result.status == "failed":
        if run_dir is not None:
            atomic_write_json(run_dir / "results.json", result.to_dict())
        raise failure(result.error)
    if run_dir is not None and start == T:  # resumed from a complete checkpoint: results.json may be gone
        atomic_write_json(run_dir / "results.json", result.to_dict())
    return result


def _data_info(stream: Stream) -> dict:
    """How the stream's data was obtained: the feature-cache record, when there is one."""
    cache = stream[0].dataset.meta.get("feature_cache")
    if not cache:
        return {}
    keys = ("hit", "encode_seconds", "load_seconds", "saved_seconds")
    return {"feature_cache": {k: cache[k] for k in keys if k in cache}}


def _record(run_dir: Path, result: Result, learner: Learner, i: int) -> None:
    append_jsonl(
        run_dir / "metrics.jsonl",
        {
            "experience": i,
            "accuracy": result.accuracy_matrix[-1].tolist(),
            "average_accuracy_seen": float(result.accuracy_matrix[-1][: i + 1].mean()),
            "learn_seconds": result.learn_seconds[-1],
            "eval_seconds": result.eval_seconds[-1],
            "samples_seen": result.samples_seen[-1],
        },
    )
    state_fn = getattr(learner, "state_dict", None)
    if state_fn is not None:
        state = {
            "learner": state_fn(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": _py_rng_state(),
            "result": _result_state(result),
        }
        save_checkpoint(
            run_dir / "checkpoints",
            state,
            {"position": i + 1, "method": result.method, "seed": result.seed, "stream": result.stream},
        )
    atomic_write_json(run_dir / "results.json", result.to_dict())


def _result_state(result: Result) -> dict:
    d = result.to_dict()
    return {k: d[k] for k in ("accuracy_matrix", "initial_accuracy", "costs")}


def _py_rng_state() -> list:
    v, internal, gauss = random.getstate()
    return [v, list(internal), gauss]


def _restore(run_dir: Path, stream: Stream, learner: Learner, result: Result) -> int:
    state, meta = load_checkpoint(run_dir / "checkpoints")
    if meta.get("stream") != result.stream or meta.get("method") != result.method:
        raise CheckpointError(
            f"the checkpoint in {run_dir} was written for another stream or method; use --overwrite to start over"
        )
    load = getattr(learner, "load_state_dict", None)
    if load is None:
        raise CheckpointError(f"{result.method} cannot be resumed: it has no load_state_dict")
    load(state["learner"])
    torch.set_rng_state(state["torch_rng"])
    v, internal, gauss = state["python_rng"]
    random.setstate((v, tuple(internal), gauss))
    r = state["result"]
    T = len(stream)
    result.accuracy_matrix = np.asarray(r["accuracy_matrix"], dtype=np.float64).reshape(-1, T)
    result.initial_accuracy = np.asarray(r["initial_accuracy"], dtype=np.float64)
    c = r["costs"]
    result.learn_seconds, result.eval_seconds = list(c["learn_seconds"]), list(c["eval_seconds"])
    result.samples_seen = list(c["samples_seen"])
    result.trainable_parameters, result.total_parameters = c["trainable_parameters"], c["total_parameters"]
    result.peak_memory_mb = c["peak_memory_mb"]
    position = int(meta["position"])
    if position != len(result.accuracy_matrix):
        raise CheckpointError(
            f"checkpoint in {run_dir} is inconsistent (position {position}, "
            f"{len(result.accuracy_matrix)} rows); use --overwrite to start over"
        )
    if position == T:
        result.status = "complete"
    _trim_metrics(run_dir / "metrics.jsonl", position)
    return position


def _trim_metrics(path: Path, position: int) -> None:
    """Keep the first ``position`` experiences' lines of ``metrics.jsonl`` (those the checkpoint holds)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if int(json.loads(line)["experience"]) < position:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line of a killed run
    if kept != lines:
        from lifelong.fileio import atomic_write_bytes

        atomic_write_bytes(path, "".join(kept[:position]).encode())


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="exp", leave=False, dynamic_ncols=True, disable=None)


__all__ = ["run", "accuracy", "check_seed", "divergence_hint", "peak_memory_mb", "LifelongError"]
