"""The paper registry: catalogue, discovery of paper modules, errors, formatting, docs."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

import lifelong.papers as papers
from lifelong.errors import ConfigError
from lifelong.papers import all_papers, format_claim, format_papers_table, get_paper, papers_table, reproduce
from lifelong.papers.base import Claim, Paper
from lifelong.papers.catalog import CATALOG, CATEGORIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "papers.md"
SHORT_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_catalog_has_59_numbered_uniquely_named_planned_papers():
    assert [p.number for p in CATALOG] == list(range(1, 60))
    names = [p.short_name for p in CATALOG]
    assert len(set(names)) == 59
    for p in CATALOG:
        assert SHORT_NAME.match(p.short_name), p.short_name
        assert p.title and p.category in CATEGORIES
        assert p.status == "planned" and p.reproduce is None
        assert p.arxiv == "" or re.match(r"^\d{4}\.\d{4,5}$", p.arxiv)


def test_catalog_fixed_names():
    by_number = {p.number: p.short_name for p in CATALOG}
    assert by_number[1] == "intent3d" and by_number[4] == "corda" and by_number[10] == "adadagrad"
    assert by_number[33] == "lamb" and by_number[34] == "refined-schedules"
    assert by_number[43] == "simplecil" and by_number[47] == "lame" and by_number[48] == "cl-llm-survey"


def test_all_papers_sorted_and_module_entries_win():
    result = all_papers()
    assert [p.number for p in result] == list(range(1, 60))
    assert len({p.short_name for p in result}) == 59
    survey = result[47]
    assert survey.short_name == "cl-llm-survey"
    assert survey.status == "claim checked" and survey.reproduce is not None


def test_get_paper_by_name_and_number():
    assert get_paper("lame").number == 47
    assert get_paper("48").short_name == "cl-llm-survey"
    assert get_paper(" LAMB ").number == 33


def test_get_paper_unknown_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        get_paper("no-such-paper")
    message = str(err.value)
    assert "no-such-paper" in message
    for name in ("lame", "cl-llm-survey", "intent3d", "n2n"):
        assert name in message
    with pytest.raises(ConfigError):
        get_paper("60")


def test_reproduce_errors():
    # paper modules on disk (infrastructure modules aside), named like their short name
    infrastructure = {"__init__", "base", "catalog", "common", "spec"}
    stems = {f.stem for f in Path(papers.__file__).parent.glob("*.py")} - infrastructure
    on_disk = {stem.replace("_", "-") for stem in stems}
    assert on_disk <= {p.short_name for p in CATALOG}
    without = [p for p in all_papers() if p.reproduce is None]
    # the planned papers are exactly those without a module; the count holds once every paper has one too
    assert {p.short_name for p in without} == {p.short_name for p in CATALOG} - on_disk
    assert all(p.status == "planned" for p in without)
    assert len(without) + len(on_disk) == 59
    for planned in without[:1]:
        with pytest.raises(ConfigError, match=rf"paper {planned.short_name} is planned: no reproduction yet"):
            reproduce(planned.short_name)
    with pytest.raises(ConfigError, match="scale"):
        reproduce("cl-llm-survey", scale="huge")
    with pytest.raises(ConfigError, match="unknown paper"):
        reproduce("nope")


def test_a_planned_paper_is_refused_even_once_every_paper_has_a_module(monkeypatch):
    # the loop above runs only while some paper is planned; with no module discovered every entry is the
    # catalogue's planned one, so the refusal is checked whatever the registry holds
    monkeypatch.setattr(papers, "_paper_modules", lambda: {})
    assert get_paper("cl-llm-survey").reproduce is None
    with pytest.raises(ConfigError, match=r"paper cl-llm-survey is planned: no reproduction yet"):
        reproduce("cl-llm-survey")
    with pytest.raises(ConfigError, match="scale"):
        reproduce("cl-llm-survey", scale="huge")
    with pytest.raises(ConfigError, match="unknown paper"):
        reproduce("nope")


def test_papers_table_rows():
    rows = papers_table()
    assert len(rows) == 59
    assert set(rows[0]) == {"number", "short_name", "title", "category", "status", "implemented_by", "has_reproduction"}
    survey = rows[47]
    assert survey["has_reproduction"] is True
    assert survey["implemented_by"] == "lifelong.evaluation.metrics, lifelong.scenarios.taxonomy"


def test_format_papers_table_contains_every_name():
    text = format_papers_table(papers_table())
    assert isinstance(text, str)
    for p in CATALOG:
        assert p.short_name in text
    assert "59 papers" in text
    header, rule = text.splitlines()[:2]
    assert header.split()[:3] == ["#", "short", "name"] and set(rule) <= {"-", " "}


def test_format_claim_shows_numbers_and_verdict():
    claim = Claim(
        paper="demo", statement="it works", criterion="x >= 1", measured={"x": 1.5, "n": 3}, held=False, notes="a note"
    )
    text = format_claim(claim)
    for part in ("demo", "it works", "x >= 1", "1.5", "NOT HELD", "a note"):
        assert part in text
    for held in (True, False):
        lines = format_claim(Claim("demo", "s", "c", {}, held)).splitlines()
        verdict = [line.split(None, 1)[1] for line in lines if line.split()[:1] == ["result"]]
        assert verdict == ["HELD" if held else "NOT HELD"]  # "HELD" alone is also inside "NOT HELD"


# --- discovery of paper modules: a fake module placed on the package path ---------------


def _add_module(monkeypatch, tmp_path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.setattr(papers, "__path__", [*papers.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, f"lifelong.papers.{name}", raising=False)


def test_new_module_is_discovered_without_editing_init(monkeypatch, tmp_path):
    # Paper 1 (intent3d) stands in for a paper that has no module of its own yet.
    _add_module(
        monkeypatch,
        tmp_path,
        "zz_fake_intent3d",
        """
        from lifelong.papers.base import Claim, Paper

        def reproduce(scale="quick"):
            return Claim("intent3d", "fake", "none", {"x": 1.0}, True, scale)

        PAPER = Paper(1, "intent3d", "Intent3D", "other", status="claim checked",
                      implemented_by=("lifelong.fake",), reproduce=reproduce)
        """,
    )
    _add_module(monkeypatch, tmp_path, "zz_helper", "VALUE = 1\n")  # no PAPER: skipped
    try:
        fake = get_paper("intent3d")
        assert fake.status == "claim checked"
        assert reproduce("intent3d", "full").scale == "full"
        assert len(all_papers()) == 59
    finally:
        sys.modules.pop("lifelong.papers.zz_fake_intent3d", None)
        sys.modules.pop("lifelong.papers.zz_helper", None)


@pytest.mark.parametrize(
    "source, message",
    [
        ('from lifelong.papers.base import Paper\nPAPER = Paper(1, "intent3d-x", "t", "other")\n', "catalogue names"),
        ('from lifelong.papers.base import Paper\nPAPER = Paper(99, "extra", "t", "optimizer")\n', "not a seed paper"),
        ('from lifelong.papers.base import Paper\nPAPER = Paper(48, "cl-llm-survey", "t", "survey")\n', "twice"),
        ('PAPER = {"number": 1}\n', "not a lifelong.papers.base.Paper"),
        (
            'from lifelong.papers.base import Paper\nPAPER = Paper(1, "intent3d", "t", "other", '
            'status="claim checked")\n',
            "no reproduce",
        ),
    ],
    ids=["wrong-name", "unknown-number", "duplicate", "not-a-paper", "checked-without-reproduce"],
)
def test_bad_paper_modules_are_reported(monkeypatch, tmp_path, source, message):
    _add_module(monkeypatch, tmp_path, "zz_bad_paper", source)
    try:
        with pytest.raises(ConfigError, match=message):
            all_papers()
    finally:
        sys.modules.pop("lifelong.papers.zz_bad_paper", None)


def test_paper_dataclass_fields_unchanged():
    assert [f for f in Paper.__dataclass_fields__] == [
        "number",
        "short_name",
        "title",
        "category",
        "status",
        "implemented_by",
        "arxiv",
        "reproduce",
    ]


# --- docs/papers.md cannot drift from the registry ---------------------------------------


def _doc_rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_docs_table_matches_registry():
    rows = _doc_rows()
    assert len(rows) == 59
    registry = {p.short_name: p for p in all_papers()}
    assert sorted(r[1] for r in rows) == sorted(registry)
    for cells in rows:
        assert len(cells) == 7, cells
        number, name, title, category, status = cells[:5]
        paper = registry[name]
        assert int(number) == paper.number
        assert status == paper.status, f"docs/papers.md says {name} is {status!r}, the registry {paper.status!r}"
        assert category == paper.category
        if paper.status == "planned":
            assert cells[6].startswith("target:")
        else:
            assert f"lifelong reproduce {name}" in cells[6]


def test_docs_explain_statuses_and_simplifications():
    text = DOC.read_text(encoding="utf-8")
    for word in ("planned", "implemented", "claim checked", "lifelong papers", "## Simplifications and guesses"):
        assert word in text
