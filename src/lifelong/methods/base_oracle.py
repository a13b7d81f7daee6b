"""A task-free learner told the true task of every segment: the known-boundaries reference.

:class:`OracleBoundaries` wraps a learner with ``observe(x, y, task=...)`` (TAME,
:class:`lifelong.methods.tame.Tame`, arXiv:2210.03869) and feeds it each segment with its
true task id, so expert switches follow the labels instead of the loss test. It is not a
registered method and imports no method module (it only calls the wrapped learner).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from lifelong.scenarios import Experience

    class SegmentLearner(Protocol):
        """What :class:`OracleBoundaries` calls on the learner it wraps (TAME's interface)."""

        config: Any
        num_classes: int | None
        samples_seen: int

        def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None: ...

        def observe(self, x: torch.Tensor, y: torch.Tensor, task: int | None = None) -> int: ...

        def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor: ...

        def parameter_counts(self) -> tuple[int, int]: ...


class OracleBoundaries:
    """A task-free learner told the true task of each segment (the reference with known boundaries).

    ``learn`` feeds the experience's batches to ``learner.observe(x, y, task=segment_tasks[index])``,
    so the expert is chosen by the task label, not by the learner's own detection. Everything
    else (selector, pruning, prediction) is the wrapped learner's. ``tame`` is the wrapped learner.
    """

    name = "tame-oracle"

    def __init__(self, tame: SegmentLearner, segment_tasks: Sequence[int]):
        self.tame = tame
        self.segment_tasks = list(segment_tasks)
        self.config = tame.config

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Prepare the wrapped learner."""
        self.tame.prepare(input_shape, num_classes)

    def learn(self, experience: Experience) -> None:
        """Stream the experience's batches with its true task id."""
        if self.tame.num_classes is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        bs = experience.batch_size or self.tame.config.batch_size
        task = self.segment_tasks[experience.index]
        for s in range(0, len(y), bs):
            self.tame.observe(x[s : s + bs], y[s : s + bs], task=task)

    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """The wrapped learner's prediction (its own routing, no task id)."""
        return self.tame.predict(x, None)

    @property
    def samples_seen(self) -> int:
        """Stream examples the wrapped learner trained on."""
        return self.tame.samples_seen

    def parameter_counts(self) -> tuple[int, int]:
        """The wrapped learner's parameter counts."""
        return self.tame.parameter_counts()


__all__ = ["OracleBoundaries"]
