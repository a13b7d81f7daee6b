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
from pathlib import Path
from typing import Sequence

from lifelong.data import load_dataset
from lifelong.errors import ConfigError, RunDirError
from lifelong.evaluation.io import atomic_write_json
from lifelong.evaluation.loop import run
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

    ``overrides`` maps method name -> config overrides. ``resume`` continues
    unfinished runs from their checkpoints and reuses finished ones; ``overwrite``
    deletes earlier runs in the way. A folder that holds a different run is refused.
    Returns method -> results (one per seed).
    """
    configure_threads(threads)
    methods = list(methods)
    if not methods:
        raise ConfigError("no methods given; list them like --methods finetune,er")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods listed twice: {methods}")
    overrides = overrides or {}
    configs = {m: build_config(get_method(m).config_class, overrides.get(m)) for m in methods}
    scenario_kwargs = dict(scenario_kwargs or {})
    data_kwargs = dict(data_kwargs or {})
    _check_inputs(data, data_kwargs, configs)  # before loading: no encoding for a run that cannot start
    dataset = load_dataset(data, **data_kwargs)
    _check_inputs(data, data_kwargs, configs, dataset)
    stream = make_scenario(scenario, dataset, **scenario_kwargs)
    root = Path(out) / name
    group = root / f"{scenario}-{data}"
    invocation = {"scenario": scenario, "data": data, "methods": methods, "seeds": [int(s) for s in seeds],
                  "overrides": {m: configs[m].to_dict() for m in methods},
                  "scenario_kwargs": scenario_kwargs, "data_kwargs": data_kwargs}
    _claim_root(root, invocation, resume, overwrite)
    results: dict[str, list[Result]] = {}
    for m in methods:
        for seed in seeds:
            run_dir = group / m / f"seed{seed}"
            spec = {"method": m, "seed": int(seed), "config": configs[m].to_dict(),
                    "scenario": scenario, "scenario_kwargs": scenario_kwargs, "data": data,
                    "data_kwargs": data_kwargs, "stream_fingerprint": stream.fingerprint()}
            done = _prepare_run_dir(run_dir, spec, resume, overwrite)
            if done is not None:
                results.setdefault(m, []).append(done)
                continue
            learner = make_learner(m, configs[m], seed=int(seed))
            res = run(stream, learner, seed=int(seed), method=m, config=configs[m].to_dict(),
                      run_dir=run_dir, resume=resume, progress=progress)
            results.setdefault(m, []).append(res)
    if report:
        from lifelong.evaluation.report import write_report

        write_report(group)
    return results


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


def _claim_root(root: Path, invocation: dict, resume: bool, overwrite: bool) -> None:
    path = root / "experiment.json"
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(invocation)):
            if resume:
                raise RunDirError(f"{root} holds a different experiment; resume it with "
                                  f"`lifelong run --resume {root}` alone, or pass --overwrite")
            # Adding methods/seeds to a folder is allowed; per-run folders are checked below.
    atomic_write_json(path, invocation)


def _prepare_run_dir(run_dir: Path, spec: dict, resume: bool, overwrite: bool) -> Result | None:
    cfg_path = run_dir / "config.json"
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != json.loads(json.dumps(spec)):
            diff = sorted(k for k in set(old) | set(spec) if old.get(k) != json.loads(json.dumps(spec)).get(k))
            raise RunDirError(f"{run_dir} already holds a different run (differs in: {', '.join(diff)}); "
                              "pass --overwrite to replace it or --name to write elsewhere")
        if not resume:
            raise RunDirError(f"{run_dir} already holds this run; pass --resume to continue or reuse it, "
                              "or --overwrite to run it again")
        res_path = run_dir / "results.json"
        if res_path.exists():
            res = Result.from_dict(json.loads(res_path.read_text()))
            if res.status == "complete":
                return res
    elif run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise RunDirError(f"{run_dir} holds files but no config.json; pass --overwrite to replace it")
    atomic_write_json(cfg_path, spec)
    return None


def resume_experiment(root: str | Path, *, progress: bool = True, threads: int | None = None):
    """Continue the experiment stored in ``root/experiment.json`` (see :func:`run_experiment`)."""
    root = Path(root)
    path = root / "experiment.json"
    if not path.exists():
        raise RunDirError(f"{root} has no experiment.json; point --resume at a folder written by `lifelong run`")
    inv = json.loads(path.read_text())
    return run_experiment(scenario=inv["scenario"], data=inv["data"], methods=inv["methods"], seeds=inv["seeds"],
                          overrides=inv["overrides"], scenario_kwargs=inv["scenario_kwargs"],
                          data_kwargs=inv["data_kwargs"], out=root.parent, name=root.name, resume=True,
                          progress=progress, threads=threads)
