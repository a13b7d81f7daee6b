"""Many methods x seeds on one scenario, written to a run folder with a report (DESIGN §5).

Layout::

    <out>/<name>/experiment.json                     the invocation (for --resume)
    <out>/<name>/<scenario>-<data>/summary.csv       mean ± std over seeds
    <out>/<name>/<scenario>-<data>/report.md         tables and plots
    <out>/<name>/<scenario>-<data>/<method>/seed<k>/ config.json, results.json, metrics.jsonl, checkpoints/
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from lifelong.data import load_dataset
from lifelong.errors import (CheckpointError, ConfigError, LearnerError, NonFiniteLossError, RunDirError,
                             RunFailedError)
from lifelong.evaluation.io import atomic_write_json
from lifelong.evaluation.loop import check_seed, run
from lifelong.fileio import FolderLock
from lifelong.evaluation.result import Result
from lifelong.methods import get_method, make_learner
from lifelong.methods.config import build_config
from lifelong.runtime import configure_threads
from lifelong.scenarios import make_scenario

DEFAULT_METHODS = ("finetune", "ewc", "lwf", "er", "ncm", "joint")
DEFAULT_SCENARIO = "class-incremental"
DEFAULT_DATA = "mnist"


def parse_sets(items: Sequence[str], methods: Sequence[str]) -> tuple[dict[str, dict], dict, dict]:
    """Parse ``--set`` items into (per-method overrides, scenario kwargs, data kwargs).

    ``method.key=v`` sets ``key`` on every listed method that has it (an error if none
    has it); ``<method>.key=v`` on that method only; ``scenario.key=v`` and
    ``data.key=v`` are passed to the scenario and dataset functions. Values stay
    strings for method keys (parsed by each config) and are JSON-decoded when possible
    for scenario/data keys.
    """
    per_method: dict[str, dict] = {m: {} for m in methods}
    scenario_kw: dict = {}
    data_kw: dict = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set expects target.key=value (e.g. method.lr=0.1), got {item!r}")
        lhs, value = item.split("=", 1)
        target, key = lhs.split(".", 1)
        if target == "scenario":
            scenario_kw[key] = _json_or_str(value)
        elif target == "data":
            data_kw[key] = _json_or_str(value)
        elif target == "method":
            takers = [m for m in methods if key in _keys(m)]
            if not takers:
                raise ConfigError(f"no selected method has config key {key!r} (methods: {', '.join(methods)})")
            for m in takers:
                per_method[m][key] = value
        elif target in per_method:
            if key not in _keys(target):
                raise ConfigError(f"method {target!r} has no key {key!r}; valid keys: {', '.join(_keys(target))}")
            per_method[target][key] = value
        else:
            raise ConfigError(f"--set target {target!r} is neither 'method', 'scenario', 'data' nor a selected "
                              f"method ({', '.join(methods)})")
    return per_method, scenario_kw, data_kw


def _keys(method: str) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(get_method(method).config_class)]


def _json_or_str(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def run_experiment(*, scenario: str = DEFAULT_SCENARIO, data: str = DEFAULT_DATA,
                   methods: Sequence[str] = DEFAULT_METHODS, seeds: Sequence[int] = (0,),
                   overrides: dict[str, dict] | None = None, scenario_kwargs: dict | None = None,
                   data_kwargs: dict | None = None, out: str | Path = "runs", name: str = "default",
                   resume: bool = False, overwrite: bool = False, progress: bool = True,
                   threads: int | None = None, report: bool = True) -> dict[str, list[Result]]:
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
        raise ConfigError("resume and overwrite exclude each other: resume continues the stored experiment, "
                          "overwrite deletes it; pick one")
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
        raise ConfigError(f"seed(s) {', '.join(map(str, twice))} listed twice; list each seed once, "
                          "like --seeds 0,1,2")
    overrides = overrides or {}
    configs = {m: build_config(get_method(m).config_class, overrides.get(m)) for m in methods}
    scenario_kwargs = dict(scenario_kwargs or {})
    data_kwargs = _absolute_paths(data, dict(data_kwargs or {}))
    root = Path(out) / name
    group = root / f"{scenario}-{data}"
    _check_writable(root)  # before loading: no encoding for a run that cannot be written
    _check_inputs(data, data_kwargs, configs)
    base = {"format": EXPERIMENT_FORMAT, "scenario": scenario, "data": data, "methods": methods,
            "seeds": seeds, "overrides": {m: configs[m].to_dict() for m in methods},
            "scenario_kwargs": scenario_kwargs, "data_kwargs": data_kwargs}
    old = _read_experiment(root, resume, overwrite)
    _compare(root, old, base, resume, overwrite, check_files=False)  # fail fast, before loading the data
    dataset = load_dataset(data, **data_kwargs)
    _check_inputs(data, data_kwargs, configs, dataset)
    stream = make_scenario(scenario, dataset, **scenario_kwargs)
    invocation = {**base, "data_files": _hash_files(dataset.meta.get("source_files") or [])}
    created = not root.exists()
    lock = FolderLock(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as e:
        raise RunDirError(f"cannot create {root} ({e.strerror}); choose a writable --out") from None
    except RunDirError:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        old = _read_experiment(root, resume, overwrite)  # again, under the lock
        _compare(root, old, invocation, resume, overwrite, check_files=True)
        runs = [(m, seed) for m in methods for seed in seeds]
        specs = {(m, seed): {"method": m, "seed": seed, "config": configs[m].to_dict(), "scenario": scenario,
                             "scenario_kwargs": scenario_kwargs, "data": data, "data_kwargs": data_kwargs,
                             "stream_fingerprint": stream.fingerprint()} for m, seed in runs}
        plans = {key: _plan_run(group / key[0] / f"seed{key[1]}", specs[key], resume) for key in runs}
        # every refusal has happened; from here on the folder is written
        if overwrite:
            _clear(root)
        atomic_write_json(root / "experiment.json", invocation)
        results: dict[str, list[Result]] = {}
        failed: list[str] = []
        for m, seed in runs:
            run_dir = group / m / f"seed{seed}"
            res = _execute(run_dir, m, seed, configs[m], stream, specs[(m, seed)], plans[(m, seed)], progress)
            if res.status == "failed":
                failed.append(f"{m} seed {seed}: {res.error}")
            results.setdefault(m, []).append(res)
        if report:
            from lifelong.evaluation.report import write_report

            write_report(group)
    finally:
        lock.release()
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # a refused run leaves no empty folder behind
    if failed:
        raise RunFailedError(f"{len(failed)} of {len(runs)} runs failed (the others finished; see "
                             f"{group / 'report.md'}): " + " | ".join(failed), results)
    return results


EXPERIMENT_FORMAT = "lifelong-experiment-1"
_PATH_KEYS = ("path", "test_path", "data_root", "cache_dir")


def _absolute_paths(data: str, data_kwargs: dict) -> dict:
    """Path arguments of the data loader made absolute, so a resume from another folder reads the same files."""
    for k in _PATH_KEYS:
        v = data_kwargs.get(k)
        if isinstance(v, str) and v and v.lower() not in ("none", "null", "false", "true"):
            data_kwargs[k] = str(Path(v).expanduser().resolve())
    return data_kwargs


def _hash_files(paths) -> dict[str, str]:
    import hashlib

    out = {}
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out[str(p)] = h.hexdigest()
    return out


def _check_writable(root: Path) -> None:
    """Refuse an output path that is a file or lies in a folder this process cannot write."""
    import os

    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                raise RunDirError(f"{p} is a file, not a folder; choose another --out or --name")
            if not os.access(p, os.W_OK | os.X_OK):
                raise RunDirError(f"cannot write to {p} (permission denied); choose a writable --out")
            return


def _read_experiment(root: Path, resume: bool, overwrite: bool) -> dict | None:
    """The ``experiment.json`` of ``root`` (None when there is none), refusing folders lifelong did not write."""
    path = root / "experiment.json"
    if not root.is_dir():
        return None
    if not path.exists():
        others = [p for p in root.iterdir() if p.name != FolderLock.NAME]
        if others:
            raise RunDirError(f"{root} holds files but no experiment.json, so it is not a lifelong run folder; "
                              "lifelong will not write into it or delete it: choose another --name or --out")
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if overwrite and not resume:
            return {"format": EXPERIMENT_FORMAT, "corrupt": True}
        raise RunDirError(f"{path} is unreadable ({e}); the experiment cannot be resumed from it: start it over "
                          "with --overwrite (the same arguments give the same numbers)") from None
    if not isinstance(old, dict) or not ({"format", "scenario", "data", "methods"} <= set(old)
                                         or old.get("format") == EXPERIMENT_FORMAT):
        raise RunDirError(f"{path} was not written by lifelong; lifelong will not overwrite or delete it: "
                          "choose another --name or --out")
    return old


def _compare(root: Path, old: dict | None, new: dict, resume: bool, overwrite: bool, check_files: bool) -> None:
    """Refuse a run whose folder holds another experiment, or the same one without --resume."""
    if old is None:
        if resume:
            raise RunDirError(f"{root} has no experiment.json; point --resume at a folder written by `lifelong run`")
        return
    if overwrite:
        return
    keys = [k for k in new if k != "data_files" and k != "format"]
    differs = [k for k in keys if old.get(k) != json.loads(json.dumps(new[k]))]
    if differs:
        if resume:
            raise RunDirError(f"{root}/experiment.json no longer matches what this version of lifelong builds from "
                              f"it (differs in: {', '.join(differs)}); start over with --overwrite")
        raise RunDirError(f"{root} holds a different experiment (differs in: {', '.join(differs)}); pass "
                          "--overwrite to replace that whole experiment, or --name to write elsewhere")
    if check_files and "data_files" in old:
        now = new.get("data_files", {})
        changed = sorted(p for p in set(old["data_files"]) | set(now) if old["data_files"].get(p) != now.get(p))
        if changed:
            raise RunDirError(f"data file(s) {', '.join(changed)} changed since this experiment started (SHA-256 "
                              "differs); restore the original file(s), or start over with --overwrite")
    if not resume:
        raise RunDirError(f"{root} already holds this experiment; pass --resume {root} to continue or reuse it, "
                          "or --overwrite to run it again")


def _clear(root: Path) -> None:
    """Delete everything in ``root`` but the lock file."""
    for p in root.iterdir():
        if p.name == FolderLock.NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _plan_run(run_dir: Path, spec: dict, resume: bool) -> Result | str:
    """What to do with one seed's folder: a finished :class:`Result` to reuse, ``"resume"`` or ``"fresh"``.

    Reads only; refuses (:class:`RunDirError`) a folder holding another run or an
    unreadable ``config.json``.
    """
    cfg_path = run_dir / "config.json"
    if not resume or not run_dir.exists():
        return "fresh"
    if not cfg_path.exists():
        return "fresh" if not any(run_dir.iterdir()) else "fresh-clear"
    try:
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{cfg_path} is unreadable ({e}); delete the folder {run_dir} and --resume again to "
                          "rerun that seed") from None
    want = json.loads(json.dumps(spec))
    if old != want:
        diff = sorted(k for k in set(old) | set(want) if old.get(k) != want.get(k)) if isinstance(old, dict) else []
        raise RunDirError(f"{run_dir} holds a different run (differs in: {', '.join(diff) or 'everything'}); "
                          "start the experiment over with --overwrite")
    res_path = run_dir / "results.json"
    if res_path.exists():
        try:
            res = Result.from_dict(json.loads(res_path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            res = None  # unreadable: redo that seed (from its checkpoint when there is one)
            print(f"lifelong: {res_path} is unreadable; redoing that seed", file=sys.stderr)
        if res is not None and res.status in ("complete", "failed"):
            return res
    return "resume"


def _execute(run_dir: Path, m: str, seed: int, config, stream, spec: dict, plan, progress: bool) -> Result:
    """Run (or reuse) one seed; a diverged run comes back as a failed :class:`Result`."""
    if isinstance(plan, Result):
        return plan
    if plan == "fresh-clear" and run_dir.exists():
        shutil.rmtree(run_dir)
    resume = plan == "resume"
    if resume:
        try:
            from lifelong.evaluation.checkpoint import load_checkpoint

            if (run_dir / "checkpoints" / "state.json").exists():
                load_checkpoint(run_dir / "checkpoints")
        except CheckpointError as e:
            print(f"lifelong: {e}; redoing {m} seed {seed} from the start", file=sys.stderr)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    atomic_write_json(run_dir / "config.json", spec)
    learner = make_learner(m, config, seed=seed)
    try:
        return run(stream, learner, seed=seed, method=m, config=config.to_dict(), run_dir=run_dir,
                   resume=resume, progress=progress)
    except (NonFiniteLossError, LearnerError) as e:
        try:
            return Result.from_dict(json.loads((run_dir / "results.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError):
            res = Result(m, seed, stream.describe(), config.to_dict(), np.zeros((0, len(stream))),
                         np.zeros(len(stream)), status="failed", error=str(e))
            atomic_write_json(run_dir / "results.json", res.to_dict())
            return res


def _check_inputs(data: str, data_kwargs: dict, configs: dict, dataset=None) -> None:
    """Refuse methods whose inputs do not match the data: token ids for text backbones, vectors otherwise.

    Without ``dataset``, judges from the loader's ``representation`` option (when it has
    one); with it, from ``dataset.meta["inputs"]``. A method reads token ids when its
    class says so (``reads_token_ids(config)``, e.g. lora-seq with backbone=minilm).
    """
    import inspect

    from lifelong.data import DATASETS
    from lifelong.data.text import REPRESENTATIONS

    if dataset is None:
        loader = DATASETS.get(data)
        rep = data_kwargs.get("representation", "features")
        if loader is None or "representation" not in inspect.signature(loader).parameters \
                or rep not in REPRESENTATIONS:
            return  # the loader reports its own errors
        tokens = rep == "tokens"
    else:
        tokens = (dataset.meta or {}).get("inputs") == "token ids"
    reads = {m: bool(getattr(get_method(m), "reads_token_ids", lambda c: False)(c)) for m, c in configs.items()}
    wrong = [m for m, r in reads.items() if r != tokens]
    if not wrong:
        return
    if tokens:
        raise ConfigError(f"data {data!r} is loaded as token ids (data.representation=tokens), but "
                          f"{', '.join(wrong)} read feature vectors; drop --set data.representation=tokens (run "
                          "those methods separately), or give lora-seq/codyra a text backbone with "
                          "--set method.backbone=minilm")
    named = ", ".join(f"{m} (backbone={getattr(configs[m], 'backbone', '?')})" for m in wrong)
    raise ConfigError(f"{named} read token ids, but data {data!r} is loaded as feature vectors; add --set "
                      "data.representation=tokens (clinc150, text-file), or use --set method.backbone=mlp")


def resume_experiment(root: str | Path, *, progress: bool = True, threads: int | None = None):
    """Continue the experiment stored in ``root/experiment.json`` (see :func:`run_experiment`)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RunDirError(f"{root} is a file; point --resume at a run folder such as runs/default")
    path = root / "experiment.json"
    if not path.exists():
        raise RunDirError(f"{root} has no experiment.json; point --resume at a folder written by `lifelong run`")
    inv = _read_experiment(root, resume=True, overwrite=False)
    need = ("scenario", "data", "methods", "seeds", "overrides", "scenario_kwargs", "data_kwargs")
    if not all(k in inv for k in need):
        raise RunDirError(f"{path} lacks {', '.join(k for k in need if k not in inv)}; it cannot be resumed: "
                          "start the experiment over with --overwrite")
    return run_experiment(scenario=inv["scenario"], data=inv["data"], methods=inv["methods"], seeds=inv["seeds"],
                          overrides=inv["overrides"], scenario_kwargs=inv["scenario_kwargs"],
                          data_kwargs=inv["data_kwargs"], out=root.parent, name=root.name, resume=True,
                          progress=progress, threads=threads)
