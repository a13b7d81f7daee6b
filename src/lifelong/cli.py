"""The ``lifelong`` command: a thin layer over the Python API (DESIGN §5).

Built on argparse (standard library, no extra dependency)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lifelong.errors import LifelongError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given; list them like --seeds 0,1,2")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"seed(s) {', '.join(map(str, twice))} listed twice; list each seed once")
    return seeds


# Options that describe an experiment: --resume takes them from the stored experiment.json
# (--data-root may point it at data that moved; the files' contents must be the same).
_EXPERIMENT_OPTIONS = ("scenario", "data", "methods", "seeds", "tasks", "sets", "out", "name", "overwrite")


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line, like every other ``lifelong: error:``."""

    def error(self, message):  # noqa: D401 - argparse's hook
        self.exit(2, f"lifelong: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lifelong`` command."""
    from lifelong.runner import DEFAULT_DATA, DEFAULT_METHODS, DEFAULT_SCENARIO

    p = _Parser(
        prog="lifelong",
        description="Models that keep learning: run, compare, "
        "reproduce. `lifelong run` alone runs the default benchmark.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run methods over a scenario and write a report")
    r.add_argument(
        "--scenario", default=None, help=f"scenario name (lifelong list scenarios; default {DEFAULT_SCENARIO})"
    )
    r.add_argument("--data", default=None, help=f"dataset name (lifelong list data; default {DEFAULT_DATA})")
    r.add_argument(
        "--methods", type=_csv, default=None, help=f"comma-separated method names (default {','.join(DEFAULT_METHODS)})"
    )
    r.add_argument("--seeds", type=_seeds, default=None, help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    r.add_argument("--tasks", type=int, default=None, help="number of experiences (scenario.tasks)")
    r.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="folder holding the dataset's files (data.data_root; default LIFELONG_DATA); with "
        "--resume, where the experiment's data files are now",
    )
    r.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=None,
        metavar="TARGET.KEY=VALUE",
        help="override: method.lr=0.1, er.buffer_size=500, scenario.seed=1, data.seed=1",
    )
    r.add_argument("--out", default=None, help="folder for run outputs (default: runs)")
    r.add_argument("--name", default=None, help="experiment name, the subfolder of --out (default: default)")
    r.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the experiment stored in RUN_DIR (e.g. runs/default) with its own arguments; "
        "only --threads, --quiet and --data-root may be added",
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="delete the experiment already in the output folder (all its methods and seeds) first",
    )
    r.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default 1; see README)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    ls = sub.add_parser("list", help="list methods, scenarios, data, optimizers or papers")
    ls.add_argument("what", choices=["methods", "scenarios", "data", "optimizers", "papers"])

    sh = sub.add_parser("show", help="show a method's config keys, defaults and help")
    sh.add_argument("method")
    sh.add_argument(
        "--data",
        default=None,
        help="show the defaults resolved for this data (they follow its kind: pixels, embeddings, tokens)",
    )
    sh.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help="a data option that changes its kind, e.g. --set data.representation=tokens",
    )

    rep = sub.add_parser("report", help="re-render the report of a finished run from its JSON files")
    rep.add_argument("run_dir", help="runs/<name> or runs/<name>/<scenario>-<data>")

    sub.add_parser("papers", help="the status table of all 59 catalogued papers")

    rp = sub.add_parser("reproduce", help="check one paper's claim and print the table")
    rp.add_argument("paper", help="short name or number (lifelong papers)")
    rp.add_argument("--scale", choices=["quick", "full"], default="quick")
    rp.add_argument("--threads", type=int, default=None)
    rp.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the paper's spec (lifelong/papers/specs/NAME.toml), e.g. "
        "--set seeds=0,1; repeatable; --show-spec lists the keys",
    )
    rp.add_argument("--show-spec", action="store_true", help="print the resolved settings and exit (runs nothing)")
    _add_merge_parser(sub)
    _add_incontext_parser(sub)
    return p


def _cmd_run(a) -> int:
    from lifelong.errors import ConfigError, RunFailedError
    from lifelong.runner import (
        DEFAULT_DATA,
        DEFAULT_METHODS,
        DEFAULT_SCENARIO,
        parse_sets,
        resume_experiment,
        run_experiment,
    )

    for opt in ("resume", "out", "name", "scenario", "data", "data_root"):
        if getattr(a, opt) is not None and not str(getattr(a, opt)).strip():
            raise ConfigError(
                f"--{opt.replace('_', '-')} was given an empty value; give a value or leave the option out"
            )
    if a.name is not None and (Path(a.name).name != a.name or a.name in (".", "..")):
        raise ConfigError(
            f"--name must be a plain folder name (no '/' or '..'), got {a.name!r}; put the folders in --out"
        )
    if a.resume is not None:
        given = [o for o in _EXPERIMENT_OPTIONS if getattr(a, o) is not None]
        if given:
            flags = ", ".join("--" + ("set" if o == "sets" else o.replace("_", "-")) for o in given)
            raise ConfigError(
                f"--resume continues the experiment exactly as stored in {a.resume}/experiment.json, "
                f"so it takes no {flags}; drop them (only --threads, --quiet and --data-root combine "
                "with --resume), or start a changed experiment with --name NEW or --overwrite"
            )
        root = Path(a.resume)
        a.run_root = root
        run = lambda: resume_experiment(
            root,
            progress=not a.quiet,
            threads=a.threads,  # noqa: E731
            data_root=a.data_root,
        )
    else:
        a.scenario, a.data = a.scenario or DEFAULT_SCENARIO, a.data or DEFAULT_DATA
        a.methods = a.methods if a.methods is not None else list(DEFAULT_METHODS)
        a.seeds, a.sets = a.seeds if a.seeds is not None else [0], a.sets or []
        a.out, a.name = a.out or "runs", a.name or "default"
        a.run_root = Path(a.out) / a.name
        per_method, scen_kw, data_kw = parse_sets(a.sets, a.methods)
        if a.tasks is not None:
            if "tasks" in scen_kw:
                raise ConfigError("the number of tasks is given twice (--tasks and --set scenario.tasks); give it once")
            scen_kw["tasks"] = a.tasks
        if a.data_root is not None:
            _set_data_root(a.data, a.data_root, data_kw)
        run = lambda: run_experiment(  # noqa: E731
            scenario=a.scenario,
            data=a.data,
            methods=a.methods,
            seeds=a.seeds,
            overrides=per_method,
            scenario_kwargs=scen_kw,
            data_kwargs=data_kw,
            out=a.out,
            name=a.name,
            overwrite=bool(a.overwrite),
            progress=not a.quiet,
            threads=a.threads,
        )
    try:
        run()
    except RunFailedError as e:
        _print_tables(a.run_root)
        print(f"lifelong: error: {e}", file=sys.stderr)
        return 1
    _print_tables(a.run_root)
    return 0


def _print_tables(root: Path) -> None:
    """Print the results table of the experiment in folder ``root`` (its runs only)."""
    from lifelong.evaluation.report import format_results_table, load_results, summarize
    from lifelong.runner import experiment_runs

    runs = experiment_runs(root)
    for g in _groups(root):
        print(f"\n{g.name}")
        print(format_results_table(summarize(load_results(g, runs))))
        print(f"report: {g / 'report.md'}")


def _groups(root: Path) -> list[Path]:
    """The experiment's ``<scenario>-<data>`` folder (when it holds results); other folders are not its own."""
    from lifelong.runner import experiment_group

    g = experiment_group(root)
    return [g] if g is not None and g.is_dir() and any(g.glob("*/seed*/results.json")) else []


def _set_data_root(data: str, root: str, data_kw: dict) -> None:
    """Pass ``--data-root`` as ``data_root`` to a dataset loader that takes it; refuse it otherwise."""
    import inspect

    from lifelong.data import DATASETS
    from lifelong.errors import ConfigError

    loader = DATASETS.get(data)
    if loader is not None and "data_root" not in inspect.signature(loader).parameters:
        raise ConfigError(
            f"dataset {data!r} takes no data_root, so --data-root does not apply; drop it "
            "(a text file is given with --set data.path=FILE)"
        )
    data_kw["data_root"] = root


def _cmd_list(a) -> int:
    if a.what == "methods":
        from lifelong.methods import get_method, list_methods

        for m in list_methods():
            doc = (get_method(m).__doc__ or "").strip().splitlines()[0]
            print(f"{m:12s} {doc}")
    elif a.what == "scenarios":
        from lifelong.scenarios import SCENARIOS

        for name, fn in sorted(SCENARIOS.items()):
            print(f"{name:20s} {(fn.__doc__ or '').strip().splitlines()[0]}")
    elif a.what == "data":
        from lifelong.data import DATASETS

        for name, fn in sorted(DATASETS.items()):
            print(f"{name:12s} {(fn.__doc__ or '').strip().splitlines()[0]}")
    elif a.what == "optimizers":
        from lifelong.optim import list_optimizers

        print("\n".join(list_optimizers()))
    else:
        return _cmd_papers(a)
    return 0


def _cmd_show(a) -> int:
    from lifelong.data.kinds import DATA_KINDS
    from lifelong.errors import ConfigError
    from lifelong.methods import config_fields, get_method

    cls = get_method(a.method)
    print(f"{a.method}: {(cls.__doc__ or '').strip().splitlines()[0]}")
    kind = None
    if a.data is not None:
        from lifelong.data import DATASETS, loader_kind
        from lifelong.errors import unknown_name
        from lifelong.runner import parse_sets

        if a.data not in DATASETS:
            raise unknown_name("dataset", a.data, DATASETS)
        per_method, scen_kw, data_kw = parse_sets(a.sets, [a.method])
        if per_method.get(a.method) or scen_kw:
            raise ConfigError("lifelong show takes only data.KEY=VALUE settings (the ones that change the data's kind)")
        kind = loader_kind(a.data, data_kw)
        print(f"defaults on {a.data} ({kind}: {DATA_KINDS[kind]}); * = set by the data kind")
    for f in config_fields(cls.config_class, kind):
        mark = "*" if f.get("from_data") else " "
        print(f" {mark}{f['name']:18s} {f['type']:12s} default={f['default']!r:12}  {f['help']}")
    return 0


def _cmd_report(a) -> int:
    from lifelong.errors import RunDirError
    from lifelong.evaluation.report import write_report
    from lifelong.runner import experiment_group, experiment_runs

    root = Path(a.run_dir)
    groups = (
        [root]
        if any(root.glob("*/seed*/results.json"))
        else _groups(root) or sorted(d for d in root.iterdir() if d.is_dir() and any(d.glob("*/seed*/results.json")))
        if root.is_dir()
        else []
    )
    if not groups:
        raise RunDirError(f"no results under {root}; point at runs/<name> or runs/<name>/<scenario>-<data>")
    for g in groups:
        if experiment_group(g.parent) != g:
            raise RunDirError(
                f"{g} is not the folder of an experiment written by `lifelong run` (no readable "
                f"experiment.json in {g.parent} naming it); lifelong report re-renders only its own "
                "run folders (from Python: lifelong.evaluation.report.write_report)"
            )
        print(f"report: {write_report(g, experiment_runs(g.parent))}")
    return 0


def _cmd_papers(a) -> int:
    from lifelong.papers import format_papers_table, papers_table

    print(format_papers_table(papers_table()))
    return 0


def _cmd_reproduce(a) -> int:
    from lifelong.papers import format_claim, get_paper, paper_settings, reproduce
    from lifelong.papers.spec import format_spec

    if a.show_spec:
        name = get_paper(a.paper).short_name
        settings = paper_settings(name, a.scale, a.sets)
        print(f"# {name}, {a.scale} scale: lifelong/papers/specs/{name}.toml ([common] + [{a.scale}], --set applied)")
        print(format_spec(settings))
        return 0
    from lifelong.runtime import configure_threads

    configure_threads(a.threads)
    claim = reproduce(a.paper, a.scale, a.sets)
    print(format_claim(claim))
    return 0


def _show_lifelong_warnings() -> None:
    """Print the library's own warnings as one ``lifelong: warning: ...`` line (others as Python does)."""
    import warnings

    from lifelong.errors import LifelongWarning

    default = warnings.showwarning
    if getattr(default, "_lifelong", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, LifelongWarning):
            print(f"lifelong: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show._lifelong = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _add_merge_parser(sub) -> None:
    """The ``merge`` subcommand: merge safetensors state dicts fine-tuned from one base model."""
    m = sub.add_parser("merge", help="merge fine-tuned models of one base model (safetensors in and out)")
    m.add_argument("--method", default="task-arithmetic", help="merge method (default task-arithmetic; --list)")
    m.add_argument("--base", help="the base (pre-trained) model's .safetensors state dict")
    m.add_argument("--experts", type=_csv, help="comma-separated .safetensors state dicts fine-tuned from --base")
    m.add_argument("--out", help="the merged .safetensors file to write")
    m.add_argument("--weights", type=_csv, default=None, help="one weight per expert, comma-separated (default 1)")
    m.add_argument("--seed", type=int, default=0, help="seed of the random masks (dare-*)")
    m.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="a method setting, repeatable"
    )
    m.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    m.add_argument("--list", action="store_true", help="list the merge methods with their settings and exit")


def _add_incontext_parser(sub) -> None:
    """The ``incontext`` subcommand: train / evaluate an in-context learning study (lifelong.incontext.report)."""
    ic = sub.add_parser("incontext", help="train or evaluate an in-context learning study (docs/incontext.md)")
    isub = ic.add_subparsers(dest="action", required=True, parser_class=_Parser)
    names = "linear, boolean, bursty, dual-process, projection"  # lifelong.incontext.STUDIES (not imported: torch)
    t = isub.add_parser("train", help="train a study; writes a checkpoint, metrics.json and plots into --out")
    t.add_argument("study", help=f"the task family: {names}")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the study's)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the study's)")
    t.add_argument("--batch", type=int, default=None, help="prompts per step (default: the study's)")
    t.add_argument("--seed", type=int, default=None, help="seed of the model, the prompts and the task world (0)")
    t.add_argument("--out", default=None, help="output folder (default runs/incontext/STUDY)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a study setting, repeatable: function=sparse_parity, model=lstm, noise=0.1, eval_every=50 "
        "(an unknown key lists the valid ones)",
    )
    t.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default 1)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    e = isub.add_parser("eval", help="re-evaluate a saved run and redraw its plots")
    e.add_argument("target", help="the run folder (--out of train), or the STUDY name with --checkpoint DIR")
    e.add_argument("--checkpoint", default=None, metavar="DIR", help="the run folder, when the first argument is STUDY")
    e.add_argument("--out", default=None, help="where metrics.json and the plots go (default: the run folder)")
    e.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default 1)")


def _cmd_incontext(a) -> int:
    from lifelong.incontext.report import evaluate_study, summary_line, train_study
    from lifelong.runtime import configure_threads

    configure_threads(a.threads)
    if a.action == "train":
        out = a.out if a.out is not None else str(Path("runs") / "incontext" / a.study)
        run = train_study(
            a.study,
            steps=a.steps,
            lr=a.lr,
            batch=a.batch,
            seed=a.seed,
            settings=a.sets,
            out=out,
            resume=a.resume,
            progress=not a.quiet,
        )
    elif a.checkpoint is not None:
        run = evaluate_study(a.checkpoint, study=a.target, out=a.out)
    else:
        run = evaluate_study(a.target, out=a.out)
    print(summary_line(run))
    print(f"wrote: {', '.join(str(f) for f in run.files)}")
    return 0


def _cmd_merge(a) -> int:
    from lifelong.errors import ConfigError
    from lifelong.merging import (
        config_help,
        get_merge_method,
        load_state_dict,
        merge,
        merge_config,
        merge_methods,
        save_state_dict,
    )

    if a.list:
        for name in merge_methods():
            print(f"{name}: {get_merge_method(name).summary}")
            for f in config_help(name):
                print(f"    {f['name']} = {f['default']!r}  ({f['type']}) {f['help']}")
        return 0
    missing = [flag for flag, value in (("--base", a.base), ("--experts", a.experts), ("--out", a.out)) if not value]
    if missing:
        raise ConfigError(
            f"lifelong merge needs {', '.join(missing)}; e.g. lifelong merge --method breadcrumbs "
            "--base base.safetensors --experts a.safetensors,b.safetensors --out merged.safetensors"
        )
    out = Path(a.out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must name a .safetensors file, got {out}")
    if out.exists() and not a.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    overrides = {}
    for item in a.sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    method = get_merge_method(a.method).name
    config = merge_config(method, overrides)
    weights = None
    if a.weights is not None:
        try:
            weights = [float(w) for w in a.weights]
        except ValueError:
            raise ConfigError(f"--weights must be numbers separated by commas, got {','.join(a.weights)}") from None
    base = load_state_dict(a.base)
    experts = [load_state_dict(p) for p in a.experts]
    merged = merge(base, experts, method, config, weights=weights, seed=a.seed, names=a.experts)
    meta = {"method": method, "config": config.to_dict(), "experts": a.experts, "weights": weights, "seed": a.seed}
    save_state_dict(merged, out, {"format": "pt", "lifelong_merge": meta})
    floats = sum(v.is_floating_point() for v in base.values())
    print(
        f"merged {len(experts)} experts with {method} ({', '.join(f'{k}={v}' for k, v in config.to_dict().items())})"
        f": {floats} tensors merged, {len(base) - floats} copied from the base -> {out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lifelong`` command; returns the exit status."""
    args = None
    try:
        from lifelong.runtime import configure_wait_policy

        configure_wait_policy()  # must precede the first torch import (see lifelong.runtime)
        _show_lifelong_warnings()
        args = build_parser().parse_args(argv)
        handlers = {
            "run": _cmd_run,
            "list": _cmd_list,
            "show": _cmd_show,
            "report": _cmd_report,
            "papers": _cmd_papers,
            "reproduce": _cmd_reproduce,
            "merge": _cmd_merge,
            "incontext": _cmd_incontext,
        }
        return handlers[args.command](args)
    except LifelongError as e:
        print(f"lifelong: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lifelong run | head`: the reader left; everything is written already
        import os

        try:  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # stdout is not a file (captured, say)
            pass
        return 141
    except OSError as e:  # a file system refusal the checks did not foresee: one line, not a traceback
        where = f" {e.filename}" if e.filename else ""
        print(
            f"lifelong: error: cannot access{where}: {e.strerror or e}; check that path and its permissions "
            "(or choose another --out)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        root = getattr(args, "run_root", None)
        if root is not None and (Path(root) / "experiment.json").is_file():
            print(
                f"lifelong: interrupted; whatever finished is saved, continue with `lifelong run --resume {root}`",
                file=sys.stderr,
            )
        else:
            print("lifelong: interrupted before anything was saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
