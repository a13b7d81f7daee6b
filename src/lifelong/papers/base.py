"""The paper registry: every seed paper, what implements it, and its checkable claim.

A paper with a reproduction lives in its own module ``lifelong/papers/<short_name>.py``
that defines a :class:`Paper`, the procedure ``check(settings, scale)`` and ``reproduce(scale)``
(its spec ``specs/<short-name>.toml`` loaded and checked), both returning a :class:`Claim`.
Papers not yet implemented are listed in :mod:`lifelong.papers.catalog` with status ``planned``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["planned", "implemented", "claim checked"]
Scale = Literal["quick", "full"]


@dataclass(frozen=True)
class Claim:
    """One paper claim as measured here.

    Attributes:
        paper: the paper's short name.
        statement: the qualitative claim being checked, in words.
        criterion: the pass criterion at this scale, in words.
        measured: named numbers the check measured (JSON-able floats/ints/strings).
        held: whether the criterion held.
        scale: ``"quick"`` (seconds, a test) or ``"full"`` (minutes, a benchmark).
        notes: anything a reader needs to interpret the numbers.
    """

    paper: str
    statement: str
    criterion: str
    measured: dict
    held: bool
    scale: str = "quick"
    notes: str = ""

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {
            "paper": self.paper,
            "statement": self.statement,
            "criterion": self.criterion,
            "measured": dict(self.measured),
            "held": bool(self.held),
            "scale": self.scale,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Paper:
    """Metadata of one seed paper.

    Attributes:
        number: its position (1-59) in the seed file.
        short_name: registry key, lowercase with dashes (``"lame"``, ``"cl-llm-survey"``).
        title: the paper's title.
        category: coarse area (``"continual method"``, ``"optimizer"``, ...).
        status: ``planned``, ``implemented`` or ``claim checked``.
        implemented_by: dotted paths of the library parts that implement it.
        arxiv: arXiv id where known, else ``""``.
        reproduce: ``reproduce(scale) -> Claim`` or ``None`` when there is none yet.
    """

    number: int
    short_name: str
    title: str
    category: str
    status: Status = "planned"
    implemented_by: tuple[str, ...] = ()
    arxiv: str = ""
    reproduce: Callable[[Scale], Claim] | None = field(default=None, compare=False, repr=False)
