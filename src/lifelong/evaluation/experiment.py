"""Many methods x seeds on one scenario, written to a run folder with a report (DESIGN §5).

Layout::

    <out>/<name>/experiment.json                     the invocation (for --resume)
    <out>/<name>/<scenario>-<data>/summary.csv       mean ± std over seeds
    <out>/<name>/<scenario>-<data>/report.md         tables and plots
    <out>/<name>/<scenario>-<data>/<method>/seed<k>/ config.json, results.json, metrics.jsonl, checkpoints/
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from lifelong.data import load_dataset
from lifelong.errors import (CheckpointError, ConfigError, LearnerError, NonFiniteLossError, RunDirError,
                             RunFailedError)
from lifelong.evaluation.io import atomic_write_json
from lifelong.evaluation.loop import check_seed, run
from lifelong.fileio import FolderLock, loads_strict, sha256_file
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
    for m in methods:
        make_learner(m, configs[m], seed=seeds[0])  # a learner that cannot be built fails before any write
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
        old = _read_experiment(root, resume, overwrite)  # again, under the lock
        _compare(root, old, invocation, resume, overwrite, check_files=True)
        runs = [(m, seed) for m in methods for seed in seeds]
        specs = {(m, seed): {"method": m, "seed": seed, "config": configs[m].to_dict(), "scenario": scenario,
                             "scenario_kwargs": scenario_kwargs, "data": data, "data_kwargs": data_kwargs,
                             "stream_fingerprint": stream.fingerprint()} for m, seed in runs}
        plans = {key: _plan_run(group / key[0] / f"seed{key[1]}", specs[key], resume, len(stream)) for key in runs}
        # every refusal has happened; from here on the folder is written
        if overwrite and old is not None:
            _clear(root, old)
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
        raise RunFailedError(f"{len(failed)} of {len(runs)} runs failed (the others finished; see "
                             f"{group / 'report.md'}): " + " | ".join(failed), results)
    return results


EXPERIMENT_FORMAT = "lifelong-experiment-1"
_PATH_KEYS = ("path", "test_path", "data_root", "cache_dir")
_SEED_DIR = re.compile(r"seed\d+")
_SEED_FILES = ("config.json", "results.json", "metrics.jsonl")
_CHECKPOINT_FILES = ("state.json", "state.safetensors")


def _absolute_paths(data: str, data_kwargs: dict) -> dict:
    """Path arguments of the data loader made absolute (and a loader's default data root written out),
    so a resume from another folder or with another ``LIFELONG_DATA`` reads the same files."""
    import inspect

    from lifelong.data import DATASETS
    from lifelong.data.text import default_data_root

    loader = DATASETS.get(data)
    if loader is not None and "data_root" in inspect.signature(loader).parameters \
            and data_kwargs.get("data_root") is None:
        data_kwargs["data_root"] = str(default_data_root())
    for k in _PATH_KEYS:
        v = data_kwargs.get(k)
        if isinstance(v, str) and v and v.lower() not in ("none", "null", "false", "true"):
            data_kwargs[k] = str(Path(v).expanduser().resolve())
    return data_kwargs


def _hash_files(paths) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in paths}


def _check_writable(root: Path) -> None:
    """Refuse an output path that is a file or lies in a folder this process cannot write."""
    import os

    for p in (root, *root.parents):
        if p.is_symlink() and not p.exists():
            raise RunDirError(f"{p} is a broken symbolic link; remove it or choose another --out")
        if p.exists():
            if not p.is_dir():
                raise RunDirError(f"{p} is a file, not a folder; choose another --out or --name")
            if not os.access(p, os.W_OK | os.X_OK):
                raise RunDirError(f"cannot write to {p} (permission denied); choose a writable --out")
            return


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def experiment_files(root: Path, inv: dict) -> tuple[list[Path], list[Path]]:
    """The files and folders (deepest first) that the experiment ``inv`` writes under ``root``.

    Exactly its own paths: ``experiment.json``; in ``<scenario>-<data>/``, the summary,
    report and plots of its methods; per method and seed, config, results, metrics and
    checkpoint files (and their temporary files). A user's file elsewhere, even one named
    like these, is not among them.
    """
    from lifelong.evaluation.report import plot_names

    group = root / f"{inv['scenario']}-{inv['data']}"
    files = [root / "experiment.json", group / "summary.csv", group / "report.md"]
    files += [group / "plots" / n for n in plot_names(inv["methods"])]
    dirs = []
    for m in inv["methods"]:
        for seed in inv["seeds"]:
            d = group / m / f"seed{int(seed)}"
            files += [d / n for n in _SEED_FILES] + [d / "checkpoints" / n for n in _CHECKPOINT_FILES]
            dirs += [d / "checkpoints", d]
        dirs.append(group / m)
    dirs += [group / "plots", group]
    temps = [p for d in {f.parent for f in files} if d.is_dir() for p in d.iterdir()
             if _is_temp(p.name) and p.is_file()]
    return files + temps, dirs


def _valid_invocation(inv) -> bool:
    """Whether ``inv`` has every entry of an ``experiment.json`` with the right type."""
    return isinstance(inv, dict) and not _invocation_problems(inv)


def _invocation_problems(inv: dict) -> list[str]:
    checks = {"scenario": lambda v: isinstance(v, str), "data": lambda v: isinstance(v, str),
              "methods": lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v),
              "seeds": lambda v: isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                                             for s in v),
              "overrides": lambda v: isinstance(v, dict) and all(isinstance(o, dict) for o in v.values()),
              "scenario_kwargs": lambda v: isinstance(v, dict), "data_kwargs": lambda v: isinstance(v, dict)}
    return [k for k, ok in checks.items() if k not in inv or not ok(inv[k])]


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
        raise RunDirError(f"{path} is unreadable ({e}), so lifelong cannot tell which files in {root} are its own "
                          "and will not touch them: move or remove that folder yourself, or choose another --name"
                          ) from None
    if not isinstance(old, dict) or not ({"format", "scenario", "data", "methods"} <= set(old)
                                         or old.get("format") == EXPERIMENT_FORMAT):
        raise RunDirError(f"{path} was not written by lifelong; lifelong will not overwrite or delete it: "
                          "choose another --name or --out")
    problems = _invocation_problems(old)
    if problems:
        raise RunDirError(f"{path} is malformed (missing or wrong type: {', '.join(problems)}), so lifelong cannot "
                          f"tell which files in {root} are its own: restore the file, or move or remove that "
                          "folder yourself")
    return old


def _compare(root: Path, old: dict | None, new: dict, resume: bool, overwrite: bool, check_files: bool) -> None:
    """Refuse a run whose folder holds another experiment, or the same one without --resume.

    On resume, data paths may differ (data moved, ``--data-root``) as long as the
    files' contents are the same.
    """
    if old is None:
        if resume:
            raise RunDirError(f"{root} has no experiment.json; point --resume at a folder written by `lifelong run`")
        return
    if overwrite:
        return

    def comparable(inv: dict) -> dict:
        inv = json.loads(json.dumps({k: v for k, v in inv.items() if k not in ("data_files", "format")}))
        return _without_paths(inv) if resume else inv

    a, b = comparable(old), comparable(new)
    differs = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if differs:
        if resume:
            raise RunDirError(f"{root}/experiment.json no longer matches what this version of lifelong builds from "
                              f"it (differs in: {', '.join(differs)}); start over with --overwrite")
        raise RunDirError(f"{root} holds a different experiment (differs in: {', '.join(differs)}); pass "
                          "--overwrite to replace that whole experiment, or --name to write elsewhere")
    if check_files and isinstance(old.get("data_files"), dict):
        before, now = old["data_files"], new.get("data_files", {})
        missing = sorted(p for p, h in before.items() if h not in set(now.values()))
        if missing or len(before) != len(now):
            raise RunDirError(f"data file(s) {', '.join(missing) or ', '.join(now)} changed since this experiment "
                              "started (SHA-256 differs); restore the original file(s), or start over with "
                              "--overwrite")
    if not resume:
        raise RunDirError(f"{root} already holds this experiment; pass --resume {root} to continue or reuse it, "
                          "or --overwrite to run it again")


def _without_paths(spec: dict) -> dict:
    """``spec`` without the data paths, which may change on resume when the data moved (contents are hashed)."""
    if isinstance(spec.get("data_kwargs"), dict):
        spec = {**spec, "data_kwargs": {k: v for k, v in spec["data_kwargs"].items() if k not in _PATH_KEYS}}
    return spec


def _clear(root: Path, old: dict) -> None:
    """Delete the files the experiment ``old`` wrote in ``root`` (not the lock), then its folders left empty."""
    files, dirs = experiment_files(root, old)
    for f in files:
        f.unlink(missing_ok=True)
    for d in dirs:
        if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()


def _plan_run(run_dir: Path, spec: dict, resume: bool, experiences: int) -> Result | str:
    """What to do with one seed's folder: a finished :class:`Result` to reuse, ``"resume"`` or ``"fresh"``.

    Reads only; refuses (:class:`RunDirError`) a folder holding another run or an
    unreadable ``config.json``. A ``results.json`` that is unreadable, failed, or not
    this run's complete result is redone.
    """
    cfg_path = run_dir / "config.json"
    if not resume or not run_dir.exists():
        return "fresh"
    if not cfg_path.exists():
        return "fresh"
    try:
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{cfg_path} is unreadable ({e}); delete the folder {run_dir} and --resume again to "
                          "redo that seed") from None
    want = _without_paths(json.loads(json.dumps(spec)))
    old = _without_paths(old) if isinstance(old, dict) else old
    if old != want:
        diff = sorted(k for k in set(old) | set(want) if old.get(k) != want.get(k)) if isinstance(old, dict) else []
        raise RunDirError(f"{run_dir} holds a different run (differs in: {', '.join(diff) or 'everything'}); "
                          f"delete that folder and --resume again to redo that seed")
    res_path = run_dir / "results.json"
    if res_path.exists():
        try:
            res = Result.from_dict(loads_strict(res_path.read_text(encoding="utf-8")))
            ok = (res.status == "complete" and res.method == spec["method"] and res.seed == spec["seed"]
                  and res.accuracy_matrix.shape == (experiences, experiences))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if ok:
            return res
        print(f"lifelong: {res_path} is not a complete result of this run; redoing that seed", file=sys.stderr)
    return "resume"


def _execute(run_dir: Path, m: str, seed: int, config, stream, spec: dict, plan, progress: bool) -> Result:
    """Run (or reuse) one seed; a run that diverges or crashes comes back as a failed :class:`Result`."""
    if isinstance(plan, Result):
        return plan
    resume = plan == "resume"
    if resume and (run_dir / "checkpoints" / "state.json").exists():
        from lifelong.evaluation.checkpoint import load_checkpoint

        try:
            _, meta = load_checkpoint(run_dir / "checkpoints")
            if meta.get("method") != m or meta.get("seed") != seed:
                raise CheckpointError(f"the checkpoint in {run_dir} belongs to {meta.get('method')} seed "
                                      f"{meta.get('seed')}")
        except CheckpointError as e:
            print(f"lifelong: {e}; redoing {m} seed {seed} from the start", file=sys.stderr)
            for f in _CHECKPOINT_FILES:
                (run_dir / "checkpoints" / f).unlink(missing_ok=True)
    atomic_write_json(run_dir / "config.json", spec)
    learner = make_learner(m, config, seed=seed)
    try:
        return run(stream, learner, seed=seed, method=m, config=config.to_dict(), run_dir=run_dir,
                   resume=resume, progress=progress)
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
    res = Result(m, seed, stream.describe(), config.to_dict(), np.zeros((0, len(stream))), np.zeros(len(stream)),
                 status="failed", error=error)
    atomic_write_json(run_dir / "results.json", res.to_dict())
    return res


def read_invocation(root: str | Path) -> dict | None:
    """The valid ``experiment.json`` of the experiment folder ``root``, or None."""
    try:
        inv = json.loads((Path(root) / "experiment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return inv if _valid_invocation(inv) else None


def experiment_runs(root: str | Path) -> list[tuple[str, int]] | None:
    """The (method, seed) runs of the experiment stored in ``root/experiment.json``; None without one."""
    inv = read_invocation(root)
    return None if inv is None else [(str(m), int(s)) for m in inv["methods"] for s in inv["seeds"]]


def experiment_group(root: str | Path) -> Path | None:
    """The ``<scenario>-<data>`` folder of the experiment stored in ``root``; None without one."""
    inv = read_invocation(root)
    return None if inv is None else Path(root) / f"{inv['scenario']}-{inv['data']}"


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


def resume_experiment(root: str | Path, *, progress: bool = True, threads: int | None = None,
                      data_root: str | Path | None = None):
    """Continue the experiment stored in ``root/experiment.json`` (see :func:`run_experiment`).

    ``data_root`` is where a moved dataset's files are now: the loader's data root, or
    the folder now holding the files named by ``path`` / ``test_path``. Their contents
    must hash as they did.
    """
    root = Path(root)
    if not root.exists():
        raise RunDirError(f"{root} does not exist; point --resume at a folder written by `lifelong run`, "
                          "such as runs/default")
    if not root.is_dir():
        raise RunDirError(f"{root} is a file; point --resume at a run folder such as runs/default")
    path = root / "experiment.json"
    if not path.exists():
        up = next((p for p in (root.parent, root.parent.parent, root.parent.parent.parent)
                   if (p / "experiment.json").is_file()), None)
        hint = f"; it lies inside the experiment folder {up}: resume that" if up is not None else \
            "; point --resume at a folder written by `lifelong run`"
        raise RunDirError(f"{root} has no experiment.json{hint}")
    inv = _read_experiment(root, resume=True, overwrite=False)
    _check_invocation(path, inv)
    data_kwargs = dict(inv["data_kwargs"])
    if data_root is not None:
        new = Path(data_root).expanduser().resolve()
        files = [k for k in ("path", "test_path") if isinstance(data_kwargs.get(k), str)]
        if "data_root" in data_kwargs:
            data_kwargs["data_root"] = str(new)
        elif files:  # data given as files (text-file): the same file names, now in that folder
            data_kwargs.update({k: str(new / Path(data_kwargs[k]).name) for k in files})
        else:
            raise ConfigError(f"the experiment's data {inv['data']!r} reads no files, so --data-root does not "
                              "apply; drop it")
    return run_experiment(scenario=inv["scenario"], data=inv["data"], methods=inv["methods"], seeds=inv["seeds"],
                          overrides=inv["overrides"], scenario_kwargs=inv["scenario_kwargs"],
                          data_kwargs=data_kwargs, out=root.parent, name=root.name, resume=True,
                          progress=progress, threads=threads)


def _check_invocation(path: Path, inv: dict) -> None:
    """Refuse an ``experiment.json`` whose entries have the wrong types (a hand edit, say)."""
    bad = _invocation_problems(inv)
    if bad:
        raise RunDirError(f"{path} is malformed (missing or wrong type: {', '.join(bad)}); it cannot be resumed: "
                          "restore it, or start the experiment over with --overwrite")
    try:
        for s in inv["seeds"]:
            check_seed(s)
    except ConfigError as e:
        raise RunDirError(f"{path} holds a bad seed ({e}); restore the file, or start the experiment over with "
                          "--overwrite") from None
