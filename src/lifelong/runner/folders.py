"""The experiment folder: what it holds, what a new run or a resume may do with it.

An experiment folder holds one experiment (``experiment.json``); these functions read
and check it, plan each seed's run (reuse, resume, fresh), and delete exactly an old
experiment's own files on overwrite. They only read the folder, except :func:`clear`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lifelong.errors import ConfigError, RunDirError
from lifelong.evaluation.loop import check_seed
from lifelong.evaluation.result import Result
from lifelong.fileio import FolderLock, loads_strict, sha256_file

EXPERIMENT_FORMAT = "lifelong-experiment-1"
_PATH_KEYS = ("path", "test_path", "data_root", "cache_dir")
_SEED_DIR = re.compile(r"seed\d+")
_SEED_FILES = ("config.json", "results.json", "metrics.jsonl")
CHECKPOINT_FILES = ("state.json", "state.safetensors")


def absolute_paths(data: str, data_kwargs: dict) -> dict:
    """Path arguments of the data loader made absolute (and a loader's default data root written out),
    so a resume from another folder or with another ``LIFELONG_DATA`` reads the same files."""
    import inspect

    from lifelong.data import DATASETS
    from lifelong.data.root import default_data_root

    loader = DATASETS.get(data)
    if (
        loader is not None
        and "data_root" in inspect.signature(loader).parameters
        and data_kwargs.get("data_root") is None
    ):
        data_kwargs["data_root"] = str(default_data_root())
    for k in _PATH_KEYS:
        v = data_kwargs.get(k)
        if isinstance(v, str) and v and v.lower() not in ("none", "null", "false", "true"):
            data_kwargs[k] = str(Path(v).expanduser().resolve())
    return data_kwargs


def hash_files(paths: Iterable[str | Path]) -> dict[str, str]:
    """SHA-256 of each file in ``paths``, keyed by the path as written."""
    return {str(p): sha256_file(p) for p in paths}


def check_writable(root: Path) -> None:
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
            files += [d / n for n in _SEED_FILES] + [d / "checkpoints" / n for n in CHECKPOINT_FILES]
            dirs += [d / "checkpoints", d]
        dirs.append(group / m)
    dirs += [group / "plots", group]
    temps = [
        p for d in {f.parent for f in files} if d.is_dir() for p in d.iterdir() if _is_temp(p.name) and p.is_file()
    ]
    return files + temps, dirs


def _valid_invocation(inv: Any) -> bool:
    """Whether ``inv`` has every entry of an ``experiment.json`` with the right type."""
    return isinstance(inv, dict) and not _invocation_problems(inv)


def _invocation_problems(inv: dict) -> list[str]:
    checks = {
        "scenario": lambda v: isinstance(v, str),
        "data": lambda v: isinstance(v, str),
        "methods": lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v),
        "seeds": lambda v: isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in v),
        "overrides": lambda v: isinstance(v, dict) and all(isinstance(o, dict) for o in v.values()),
        "scenario_kwargs": lambda v: isinstance(v, dict),
        "data_kwargs": lambda v: isinstance(v, dict),
    }
    return [k for k, ok in checks.items() if k not in inv or not ok(inv[k])]


def read_experiment(root: Path, resume: bool, overwrite: bool) -> dict | None:
    """The ``experiment.json`` of ``root`` (None when there is none), refusing folders lifelong did not write."""
    path = root / "experiment.json"
    if not root.is_dir():
        return None
    if not path.exists():
        others = [p for p in root.iterdir() if p.name != FolderLock.NAME]
        if others:
            raise RunDirError(
                f"{root} holds files but no experiment.json, so it is not a lifelong run folder; "
                "lifelong will not write into it or delete it: choose another --name or --out"
            )
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(
            f"{path} is unreadable ({e}), so lifelong cannot tell which files in {root} are its own "
            "and will not touch them: move or remove that folder yourself, or choose another --name"
        ) from None
    if not isinstance(old, dict) or not (
        {"format", "scenario", "data", "methods"} <= set(old) or old.get("format") == EXPERIMENT_FORMAT
    ):
        raise RunDirError(
            f"{path} was not written by lifelong; lifelong will not overwrite or delete it: "
            "choose another --name or --out"
        )
    problems = _invocation_problems(old)
    if problems:
        raise RunDirError(
            f"{path} is malformed (missing or wrong type: {', '.join(problems)}), so lifelong cannot "
            f"tell which files in {root} are its own: restore the file, or move or remove that "
            "folder yourself"
        )
    return old


def compare(root: Path, old: dict | None, new: dict, resume: bool, overwrite: bool, check_files: bool) -> None:
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
            raise RunDirError(
                f"{root}/experiment.json no longer matches what this version of lifelong builds from "
                f"it (differs in: {', '.join(differs)}); start over with --overwrite"
            )
        raise RunDirError(
            f"{root} holds a different experiment (differs in: {', '.join(differs)}); pass "
            "--overwrite to replace that whole experiment, or --name to write elsewhere"
        )
    if check_files and isinstance(old.get("data_files"), dict):
        before, now = old["data_files"], new.get("data_files", {})
        missing = sorted(p for p, h in before.items() if h not in set(now.values()))
        if missing or len(before) != len(now):
            raise RunDirError(
                f"data file(s) {', '.join(missing) or ', '.join(now)} changed since this experiment "
                "started (SHA-256 differs); restore the original file(s), or start over with "
                "--overwrite"
            )
    if not resume:
        raise RunDirError(
            f"{root} already holds this experiment; pass --resume {root} to continue or reuse it, "
            "or --overwrite to run it again"
        )


def _without_paths(spec: dict) -> dict:
    """``spec`` without the data paths, which may change on resume when the data moved (contents are hashed)."""
    if isinstance(spec.get("data_kwargs"), dict):
        spec = {**spec, "data_kwargs": {k: v for k, v in spec["data_kwargs"].items() if k not in _PATH_KEYS}}
    return spec


def clear(root: Path, old: dict) -> None:
    """Delete the files the experiment ``old`` wrote in ``root`` (not the lock), then its folders left empty."""
    files, dirs = experiment_files(root, old)
    for f in files:
        f.unlink(missing_ok=True)
    for d in dirs:
        if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()


def plan_run(run_dir: Path, spec: dict, resume: bool, experiences: int) -> Result | str:
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
        raise RunDirError(
            f"{cfg_path} is unreadable ({e}); delete the folder {run_dir} and --resume again to redo that seed"
        ) from None
    want = _without_paths(json.loads(json.dumps(spec)))
    old = _without_paths(old) if isinstance(old, dict) else old
    if old != want:
        diff = sorted(k for k in set(old) | set(want) if old.get(k) != want.get(k)) if isinstance(old, dict) else []
        raise RunDirError(
            f"{run_dir} holds a different run (differs in: {', '.join(diff) or 'everything'}); "
            f"delete that folder and --resume again to redo that seed"
        )
    res_path = run_dir / "results.json"
    if res_path.exists():
        try:
            res = Result.from_dict(loads_strict(res_path.read_text(encoding="utf-8")))
            ok = (
                res.status == "complete"
                and res.method == spec["method"]
                and res.seed == spec["seed"]
                and res.accuracy_matrix.shape == (experiences, experiences)
            )
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if ok:
            return res
        print(f"lifelong: {res_path} is not a complete result of this run; redoing that seed", file=sys.stderr)
    return "resume"


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


def check_invocation(path: Path, inv: dict) -> None:
    """Refuse an ``experiment.json`` whose entries have the wrong types (a hand edit, say)."""
    bad = _invocation_problems(inv)
    if bad:
        raise RunDirError(
            f"{path} is malformed (missing or wrong type: {', '.join(bad)}); it cannot be resumed: "
            "restore it, or start the experiment over with --overwrite"
        )
    try:
        for s in inv["seeds"]:
            check_seed(s)
    except ConfigError as e:
        raise RunDirError(
            f"{path} holds a bad seed ({e}); restore the file, or start the experiment over with --overwrite"
        ) from None
