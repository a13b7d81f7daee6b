"""Many methods x seeds on one scenario, written to a run folder with a report (DESIGN §5).

Layout::

    <out>/<name>/experiment.json                     the invocation (for --resume)
    <out>/<name>/<scenario>-<data>/summary.csv       mean ± std over seeds
    <out>/<name>/<scenario>-<data>/report.md         tables and plots
    <out>/<name>/<scenario>-<data>/<method>/seed<k>/ config.json, results.json, metrics.jsonl, checkpoints/
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lifelong.data import DATASETS, load_dataset
from lifelong.data.dataset import data_input_kind
from lifelong.data.kinds import loader_kind
from lifelong.errors import (
    CheckpointError,
    ConfigError,
    LearnerError,
    NonFiniteLossError,
    RunDirError,
    RunFailedError,
    ScenarioMismatchWarning,
    unknown_name,
)
from lifelong.evaluation.io import atomic_write_json
from lifelong.evaluation.loop import check_seed, run
from lifelong.evaluation.result import Result
from lifelong.fileio import FolderLock
from lifelong.methods import INPUT_KINDS, check_inputs, get_method, make_learner
from lifelong.methods.config import build_config
from lifelong.runner.folders import (
    CHECKPOINT_FILES,
    EXPERIMENT_FORMAT,
    absolute_paths,
    check_invocation,
    check_writable,
    clear,
    compare,
    hash_files,
    plan_run,
    read_experiment,
)
from lifelong.runtime import configure_threads
from lifelong.scenarios import make_scenario

if TYPE_CHECKING:
    from lifelong.data import Dataset
    from lifelong.methods import MethodConfig
    from lifelong.scenarios import Stream

DEFAULT_METHODS = ("finetune", "ewc", "lwf", "er", "derpp", "icarl", "gdumb", "ncm", "joint")
DEFAULT_SCENARIO = "class-incremental"
DEFAULT_DATA = "mnist"


#: what a method built for a scenario other than class-incremental misses on another stream
_BUILT_FOR = {
    "task-incremental": "it needs the task id at test time, which this stream does not give",
    "few-shot-incremental": "it trains on a full-data base session and then adapts to few-shot sessions",
    "cfsl": "it learns from few-shot support sets",
}


def warn_scenario_mismatch(methods: Sequence[str], scenario: str) -> list[str]:
    """Warn (:class:`~lifelong.errors.ScenarioMismatchWarning`) for each method built for another scenario.

    A task-incremental method (``packnet``, ``hypernet``, ``dst``) on a class-incremental stream
    predicts without the task id it relies on, so its score there says little about the method; the
    run goes on, since comparing under one protocol can be what the user wants. Returns the messages.
    """
    messages = []
    for m in methods:
        built_for = getattr(get_method(m), "scenario", DEFAULT_SCENARIO)
        if built_for != scenario and built_for in _BUILT_FOR:
            msg = (
                f"{m} is built for the {built_for} scenario ({_BUILT_FOR[built_for]}); on this {scenario} "
                f"stream expect a score well below its own; run it with --scenario {built_for}"
            )
            warnings.warn(msg, ScenarioMismatchWarning, stacklevel=3)
            messages.append(msg)
    return messages


def run_experiment(
    *,
    scenario: str = DEFAULT_SCENARIO,
    data: str = DEFAULT_DATA,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] = (0,),
    overrides: dict[str, dict] | None = None,
    scenario_kwargs: dict | None = None,
    data_kwargs: dict | None = None,
    out: str | Path = "runs",
    name: str = "default",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    threads: int | None = None,
    report: bool = True,
) -> dict[str, list[Result]]:
    """Run every method with every seed on one scenario and write the run folder and report.

    ``overrides`` maps method name -> config overrides. The folder ``out/name`` holds
    exactly one experiment (its ``experiment.json``):

    - a new run into a folder holding another experiment, or the same one, is refused
      before anything is written (:class:`RunDirError`); ``resume=True`` continues the
      same experiment (finished seeds are reused, unfinished ones continue from their
      checkpoints, seeds whose ``results.json`` is missing or unreadable are redone);
      ``overwrite=True`` deletes the whole earlier experiment first;
    - the folder is locked (``.lock`` with the owner's pid) while the experiment runs;
    - data files (``data.path``, CLINC150's files) are recorded with their SHA-256, and a
      resume over changed files is refused.

    A method that diverges (NaN loss or predictions) is recorded as failed; the other
    methods still run, the report is written, and :class:`RunFailedError` is raised at
    the end (its ``results`` attribute holds everything). Returns method -> results
    (one per seed).
    """
    configure_threads(threads)
    if resume and overwrite:
        raise ConfigError(
            "resume and overwrite exclude each other: resume continues the stored experiment, "
            "overwrite deletes it; pick one"
        )
    methods = list(methods)
    if not methods:
        raise ConfigError("no methods given; list them like --methods finetune,er")
    if len(set(methods)) != len(methods):
        twice = sorted({m for m in methods if methods.count(m) > 1})
        raise ConfigError(f"methods listed twice: {', '.join(twice)}; list each once")
    seeds = [check_seed(s) for s in seeds]
    if not seeds:
        raise ConfigError("no seeds given; list them like --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        raise ConfigError(f"seed(s) {', '.join(map(str, twice))} listed twice; list each seed once, like --seeds 0,1,2")
    overrides = overrides or {}
    if data not in DATASETS:
        raise unknown_name("dataset", data, DATASETS)
    data_kind = loader_kind(data, data_kwargs)  # the defaults that suit this kind of data are resolved once
    configs = {m: build_config(get_method(m).config_class, overrides.get(m), data_kind=data_kind) for m in methods}
    for m in methods:
        make_learner(m, configs[m], seed=seeds[0])  # a learner that cannot be built fails before any write
    warn_scenario_mismatch(methods, scenario)
    scenario_kwargs = dict(scenario_kwargs or {})
    data_kwargs = absolute_paths(data, dict(data_kwargs or {}))
    root = Path(out) / name
    group = root / f"{scenario}-{data}"
    check_writable(root)  # before loading: no encoding for a run that cannot be written
    _check_inputs(data, data_kwargs, configs)  # before loading: nothing encoded for methods that cannot read it
    base = {
        "format": EXPERIMENT_FORMAT,
        "scenario": scenario,
        "data": data,
        "data_kind": data_kind,
        "methods": methods,
        "seeds": seeds,
        "overrides": {m: configs[m].to_dict() for m in methods},
        "scenario_kwargs": scenario_kwargs,
        "data_kwargs": data_kwargs,
    }
    old = read_experiment(root, resume, overwrite)
    compare(root, old, base, resume, overwrite, check_files=False)  # fail fast, before loading the data
    dataset = load_dataset(data, **data_kwargs)
    _check_inputs(data, data_kwargs, configs, dataset)
    stream = make_scenario(scenario, dataset, **scenario_kwargs)
    invocation = {**base, "data_files": hash_files(dataset.meta.get("source_files") or [])}
    try:
        root.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as e:
        raise RunDirError(f"cannot create {root} ({e.strerror}); choose a writable --out") from None
    lock = FolderLock(root)
    try:
        lock.acquire()
        old = read_experiment(root, resume, overwrite)  # again, under the lock
        compare(root, old, invocation, resume, overwrite, check_files=True)
        runs = [(m, seed) for m in methods for seed in seeds]
        specs = {
            (m, seed): {
                "method": m,
                "seed": seed,
                "config": configs[m].to_dict(),
                "scenario": scenario,
                "scenario_kwargs": scenario_kwargs,
                "data": data,
                "data_kind": data_kind,
                "data_kwargs": data_kwargs,
                "stream_fingerprint": stream.fingerprint(),
            }
            for m, seed in runs
        }
        plans = {key: plan_run(group / key[0] / f"seed{key[1]}", specs[key], resume, len(stream)) for key in runs}
        # every refusal has happened; from here on the folder is written
        if overwrite and old is not None:
            clear(root, old)
        atomic_write_json(root / "experiment.json", invocation)
        results: dict[str, list[Result]] = {}
        failed: list[str] = []
        for m, seed in runs:
            run_dir = group / m / f"seed{seed}"
            res = _execute(run_dir, m, seed, configs[m], stream, specs[(m, seed)], plans[(m, seed)], progress)
            if res.status == "failed":
                failed.append(f"{m} seed {seed}: {res.error or 'failed'}")
            results.setdefault(m, []).append(res)
        if report:
            from lifelong.evaluation.report import write_report

            write_report(group, runs=runs)
    finally:
        lock.release()
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # a refused run leaves no empty folder behind
    if failed:
        raise RunFailedError(
            f"{len(failed)} of {len(runs)} runs failed (the others finished; see "
            f"{group / 'report.md'}): " + " | ".join(failed),
            results,
        )
    return results


def _execute(
    run_dir: Path,
    m: str,
    seed: int,
    config: MethodConfig,
    stream: Stream,
    spec: dict,
    plan: Result | str,
    progress: bool,
) -> Result:
    """Run (or reuse) one seed; a run that diverges or crashes comes back as a failed :class:`Result`."""
    if isinstance(plan, Result):
        return plan
    resume = plan == "resume"
    if resume and (run_dir / "checkpoints" / "state.json").exists():
        from lifelong.evaluation.checkpoint import load_checkpoint

        try:
            _, meta = load_checkpoint(run_dir / "checkpoints")
            if meta.get("method") != m or meta.get("seed") != seed:
                raise CheckpointError(
                    f"the checkpoint in {run_dir} belongs to {meta.get('method')} seed {meta.get('seed')}"
                )
        except CheckpointError as e:
            print(f"lifelong: {e}; redoing {m} seed {seed} from the start", file=sys.stderr)
            for f in CHECKPOINT_FILES:
                (run_dir / "checkpoints" / f).unlink(missing_ok=True)
    atomic_write_json(run_dir / "config.json", spec)
    learner = make_learner(m, config, seed=seed)
    try:
        return run(
            stream,
            learner,
            seed=seed,
            method=m,
            config=config.to_dict(),
            run_dir=run_dir,
            resume=resume,
            progress=progress,
        )
    except (NonFiniteLossError, LearnerError) as e:
        error = str(e)
    except Exception as e:  # one broken method does not sink the others; its traceback is shown
        import traceback

        print(f"lifelong: {m} seed {seed} crashed; the other runs go on. Traceback:", file=sys.stderr)
        traceback.print_exc()
        error = f"{type(e).__name__}: {e}"
    try:  # keep the experiences that finished
        res = Result.from_dict(json.loads((run_dir / "results.json").read_text(encoding="utf-8")))
        if res.status == "failed":
            return res
        res.status, res.error = "failed", error
        atomic_write_json(run_dir / "results.json", res.to_dict())
        return res
    except (OSError, ValueError, KeyError, TypeError):
        pass
    res = Result(
        m,
        seed,
        stream.describe(),
        config.to_dict(),
        np.zeros((0, len(stream))),
        np.zeros(len(stream)),
        status="failed",
        error=error,
    )
    atomic_write_json(run_dir / "results.json", res.to_dict())
    return res


def resume_experiment(
    root: str | Path, *, progress: bool = True, threads: int | None = None, data_root: str | Path | None = None
) -> dict[str, list[Result]]:
    """Continue the experiment stored in ``root/experiment.json`` (see :func:`run_experiment`).

    ``data_root`` is where a moved dataset's files are now: the loader's data root, or
    the folder now holding the files named by ``path`` / ``test_path``. Their contents
    must hash as they did.
    """
    root = Path(root)
    if not root.exists():
        raise RunDirError(
            f"{root} does not exist; point --resume at a folder written by `lifelong run`, such as runs/default"
        )
    if not root.is_dir():
        raise RunDirError(f"{root} is a file; point --resume at a run folder such as runs/default")
    path = root / "experiment.json"
    if not path.exists():
        up = next(
            (
                p
                for p in (root.parent, root.parent.parent, root.parent.parent.parent)
                if (p / "experiment.json").is_file()
            ),
            None,
        )
        hint = (
            f"; it lies inside the experiment folder {up}: resume that"
            if up is not None
            else "; point --resume at a folder written by `lifelong run`"
        )
        raise RunDirError(f"{root} has no experiment.json{hint}")
    inv = read_experiment(root, resume=True, overwrite=False)
    check_invocation(path, inv)
    data_kwargs = dict(inv["data_kwargs"])
    if data_root is not None:
        new = Path(data_root).expanduser().resolve()
        files = [k for k in ("path", "test_path") if isinstance(data_kwargs.get(k), str)]
        if "data_root" in data_kwargs:
            data_kwargs["data_root"] = str(new)
        elif files:  # data given as files (text-file): the same file names, now in that folder
            data_kwargs.update({k: str(new / Path(data_kwargs[k]).name) for k in files})
        else:
            raise ConfigError(
                f"the experiment's data {inv['data']!r} reads no files, so --data-root does not apply; drop it"
            )
    return run_experiment(
        scenario=inv["scenario"],
        data=inv["data"],
        methods=inv["methods"],
        seeds=inv["seeds"],
        overrides=inv["overrides"],
        scenario_kwargs=inv["scenario_kwargs"],
        data_kwargs=data_kwargs,
        out=root.parent,
        name=root.name,
        resume=True,
        progress=progress,
        threads=threads,
    )


def _check_inputs(data: str, data_kwargs: dict, configs: dict, dataset: Dataset | None = None) -> None:
    """Refuse methods that cannot read the data's kind of input (feature vectors or token ids).

    Without ``dataset``, judges from the loader's ``representation`` option (when it has
    one); with it, from the loaded dataset.
    """
    import inspect

    if dataset is None:
        loader = DATASETS.get(data)
        kind = data_kwargs.get("representation", "features")
        if loader is None or "representation" not in inspect.signature(loader).parameters or kind not in INPUT_KINDS:
            return  # the loader reports its own errors
    else:
        kind = data_input_kind(dataset)
    check_inputs(
        kind,
        configs,
        set_prefix="--set method.",
        data_fix={
            "features": "drop --set data.representation=tokens (run those methods separately)",
            "tokens": "add --set data.representation=tokens (clinc150, text-file)",
        },
    )
