"""The paper registry: every seed paper, what implements it, and its checkable claim.

The 59 seed papers are listed in :mod:`lifelong.papers.catalog`. A paper with a reproduction has
its own module (``lifelong/papers/<short_name with underscores>.py``, found at call time) defining
``PAPER`` and the procedure ``check(settings, scale) -> Claim``, and its protocol as data in
``lifelong/papers/specs/<short-name>.toml`` (:mod:`lifelong.papers.spec`).
``reproduce("lame", "quick", sets=["seeds=[0,1]"])`` loads the spec, applies the overrides and
runs the check; :func:`paper_settings` returns the resolved settings. Importing this package
imports nothing but the catalogue and the two dataclasses.
"""

from __future__ import annotations

import importlib
import pkgutil
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from lifelong.errors import ConfigError, LifelongError, unknown_name
from lifelong.papers.base import Claim, Paper
from lifelong.papers.catalog import CATALOG

__all__ = [
    "Claim",
    "Paper",
    "SCALES",
    "all_papers",
    "get_paper",
    "reproduce",
    "paper_settings",
    "papers_table",
    "format_claim",
    "format_papers_table",
]

#: Accepted values of ``reproduce(..., scale=...)``.
SCALES: tuple[str, ...] = ("quick", "full")

# Modules of this package that hold infrastructure rather than one paper.
_NOT_PAPER_MODULES = frozenset({"base", "catalog", "common", "spec", "__init__"})


def _paper_modules() -> dict[int, Paper]:
    """Import every paper module of this package and return its ``PAPER`` by number.

    Modules without a module-level ``PAPER`` (shared helpers) are skipped. A module
    whose ``PAPER`` is malformed, is not in the catalogue, or repeats another
    module's number raises :class:`ConfigError` naming the module.
    """
    by_number = {p.number: p for p in CATALOG}
    found: dict[int, Paper] = {}
    where: dict[int, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_PAPER_MODULES or info.name.startswith("_"):
            continue
        module_name = f"{__name__}.{info.name}"
        module = importlib.import_module(module_name)
        paper = getattr(module, "PAPER", None)
        if paper is None:
            continue
        if not isinstance(paper, Paper):
            raise ConfigError(
                f"{module_name}.PAPER is a {type(paper).__name__}, not a lifelong.papers.base.Paper; "
                f"define PAPER = Paper(...)"
            )
        entry = by_number.get(paper.number)
        if entry is None:
            raise ConfigError(
                f"{module_name}.PAPER has number {paper.number}, which is not a seed paper (1-59); "
                f"use the paper's number from lifelong.papers.catalog"
            )
        if paper.short_name != entry.short_name:
            raise ConfigError(
                f"{module_name}.PAPER is paper {paper.number} but is named {paper.short_name!r}; "
                f"the catalogue names it {entry.short_name!r}: use that short name"
            )
        if paper.number in found:
            raise ConfigError(
                f"paper {paper.number} ({entry.short_name}) is defined twice, in "
                f"{where[paper.number]} and {module_name}; keep one"
            )
        if paper.status == "claim checked" and paper.reproduce is None:
            raise ConfigError(
                f"{module_name}.PAPER has status 'claim checked' but no reproduce function; "
                f"pass reproduce=reproduce or lower the status"
            )
        found[paper.number] = paper
        where[paper.number] = module_name
    return found


def all_papers() -> list[Paper]:
    """All 59 seed papers, sorted by number.

    Each catalogue entry is replaced by the ``PAPER`` of a module of this package
    that defines the same number; modules are discovered at call time.
    """
    modules = _paper_modules()
    return sorted((modules.get(p.number, p) for p in CATALOG), key=lambda p: p.number)


def get_paper(name: str) -> Paper:
    """The paper with short name ``name`` (or whose number is ``name``, e.g. ``"48"``).

    Raises:
        ConfigError: no paper has that name; the message lists the valid names.
    """
    papers = all_papers()
    key = str(name).strip()
    for paper in papers:
        if paper.short_name == key.lower() or (key.isdigit() and int(key) == paper.number):
            return paper
    raise unknown_name("paper", name, [p.short_name for p in papers])


def _procedure(paper: Paper) -> Callable | None:
    """The ``check(settings, scale)`` of ``paper``'s module, or None when it has no spec-driven procedure."""
    module = importlib.import_module(paper.reproduce.__module__)
    return getattr(module, "check", None)


def paper_settings(name: str, scale: str = "quick", sets: Iterable[str] = ()) -> dict:
    """The resolved protocol settings of paper ``name`` at ``scale`` (its spec with ``sets`` applied).

    Raises:
        ConfigError: unknown paper or scale, a paper without a spec, an unknown key or a mistyped value.
    """
    from lifelong.papers.spec import load_spec

    paper = get_paper(name)
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return load_spec(paper.short_name, scale, sets)


def reproduce(name: str, scale: str = "quick", sets: Iterable[str] = ()) -> Claim:
    """Run the reproduction of paper ``name`` at ``scale`` and return its :class:`Claim`.

    ``scale="quick"`` runs in seconds (it is a unit test); ``"full"`` runs in minutes.
    ``sets`` overrides settings of the paper's spec (``"dotted.key=value"``, see
    :func:`lifelong.papers.spec.load_spec`).

    Raises:
        ConfigError: unknown paper, unknown scale, a paper without a reproduction, a bad override.
    """
    paper = get_paper(name)
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    if paper.reproduce is None:
        raise ConfigError(f"paper {paper.short_name} is {paper.status}: no reproduction yet; see docs/papers.md")
    sets = list(sets)
    check = _procedure(paper)
    if check is not None:
        claim = check(paper_settings(paper.short_name, scale, sets), scale)
    elif sets:
        raise ConfigError(f"paper {paper.short_name} has no spec file, so its settings cannot be set")
    else:
        claim = paper.reproduce(scale)
    if not isinstance(claim, Claim):
        raise LifelongError(
            f"reproduce() of paper {paper.short_name} returned {type(claim).__name__}, "
            f"not a Claim; fix lifelong.papers module of that paper"
        )
    return claim


def papers_table() -> list[dict]:
    """One row per paper: number, short_name, title, category, status, implemented_by, has_reproduction."""
    return [
        {
            "number": p.number,
            "short_name": p.short_name,
            "title": p.title,
            "category": p.category,
            "status": p.status,
            "implemented_by": ", ".join(p.implemented_by),
            "has_reproduction": p.reproduce is not None,
        }
        for p in all_papers()
    ]


def _fmt_value(value) -> str:
    """Human form of one measured value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _wrap(label: str, text: str, label_width: int, width: int) -> list[str]:
    """``label`` then ``text`` wrapped to ``width``, continuation lines indented."""
    indent = " " * (label_width + 2)
    lines = (
        textwrap.wrap(
            text,
            width=width,
            initial_indent=label.ljust(label_width) + "  ",
            subsequent_indent=indent,
            break_on_hyphens=False,
        )
        if text
        else [label]
    )
    return lines


def format_claim(claim: Claim, width: int = 88) -> str:
    """A plain-text table of one checked claim: statement, criterion, each number, HELD / NOT HELD."""
    label_width = 10
    lines = [f"{claim.paper} ({claim.scale} scale)", "=" * width]
    lines += _wrap("claim", claim.statement, label_width, width)
    lines += _wrap("criterion", claim.criterion, label_width, width)
    lines.append("-" * width)
    measured = {str(k): _fmt_value(v) for k, v in claim.measured.items()}
    if measured:
        key_width = max(len("measured"), *(len(k) for k in measured))
        lines.append(f"{'measured'.ljust(key_width)}  value")
        for key, value in measured.items():
            lines.append(f"{key.ljust(key_width)}  {value}")
    else:
        lines.append("measured  (nothing)")
    lines.append("-" * width)
    lines.append(f"{'result'.ljust(label_width)}  {'HELD' if claim.held else 'NOT HELD'}")
    if claim.notes:
        lines += _wrap("notes", claim.notes, label_width, width)
    return "\n".join(lines)


def format_papers_table(rows: Iterable[Mapping] | None = None, title_width: int = 60) -> str:
    """A plain-text, column-aligned table of ``rows`` (default: :func:`papers_table`).

    Titles longer than ``title_width`` characters are cut and end in ``...``. A last
    line counts the papers per status.
    """
    rows = list(papers_table() if rows is None else rows)
    header = ("#", "short name", "status", "category", "title")
    body = []
    for r in rows:
        title = str(r["title"])
        if len(title) > title_width:
            title = title[: title_width - 3].rstrip() + "..."
        body.append((str(r["number"]), str(r["short_name"]), str(r["status"]), str(r["category"]), title))
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells) -> str:
        first = cells[0].rjust(widths[0])
        rest = [c.ljust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in body]
    counts = Counter(str(r["status"]) for r in rows)
    out.append("")
    out.append(
        f"{len(rows)} papers: "
        + ", ".join(f"{counts[s]} {s}" for s in ("claim checked", "implemented", "planned") if counts[s])
    )
    return "\n".join(out)
