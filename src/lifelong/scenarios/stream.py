"""Experience and Stream: index-based, lazy views of one dataset (DESIGN §1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lifelong.data import Dataset
from lifelong.errors import DataError

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Experience:
    """One step of a stream: index arrays into a dataset, never copies.

    Labels are exposed in *stream ids*: the stream's class order maps each
    original class to ``0..num_classes-1`` in order of first appearance, so the
    classes seen after k class-incremental experiences are ``0..n_k-1``.

    Attributes:
        index: position in the stream.
        dataset: the dataset the indices point into.
        train_idx, test_idx: int64 index arrays into the dataset's train/test splits.
        classes: sorted stream ids of the classes in the train split.
        task_id: the task identity, or ``None`` when the scenario hides it.
        num_classes: total classes of the stream.
        label_map: int64 tensor mapping original label -> stream id.
        transform: optional input transform (a permutation or rotation in
            domain-incremental streams), applied when tensors are materialised.
        online: True when the learner may see each training example once, in
            mini-batches of ``batch_size`` in the given order.
        batch_size: the online mini-batch size (``None`` for offline experiences).
    """

    index: int
    dataset: Dataset
    train_idx: np.ndarray
    test_idx: np.ndarray
    classes: list[int]
    task_id: int | None
    num_classes: int
    label_map: torch.Tensor
    transform: Transform | None = None
    online: bool = False
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if len(self.train_idx) == 0:
            raise DataError(
                f"experience {self.index} has no training examples; use fewer tasks "
                "or a dataset with more examples per class"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return self.dataset.input_shape

    def __len__(self) -> int:
        return len(self.train_idx)

    def _materialise(self, x: torch.Tensor, y: torch.Tensor, idx: np.ndarray):
        index = torch.as_tensor(idx, dtype=torch.long)
        xs = x.index_select(0, index)
        if self.transform is not None:
            xs = self.transform(xs)
        return xs, self.label_map[y.index_select(0, index)]

    def train_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training inputs and stream-id labels of this experience, in stream order."""
        return self._materialise(self.dataset.x_train, self.dataset.y_train, self.train_idx)

    def test_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test inputs and stream-id labels of this experience."""
        return self._materialise(self.dataset.x_test, self.dataset.y_test, self.test_idx)


@dataclass
class Stream:
    """An ordered sequence of experiences plus stream-level facts.

    Attributes:
        scenario: scenario name (``"class-incremental"``).
        experiences: the experiences in order.
        class_order: original class labels in stream-id order.
        class_names: class names in stream-id order.
        params: the scenario's arguments (JSON-able), for reports and checkpoints.
    """

    scenario: str
    experiences: list[Experience]
    class_order: list[int]
    class_names: list[str]
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.experiences)

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __getitem__(self, i: int) -> Experience:
        return self.experiences[i]

    @property
    def num_classes(self) -> int:
        """Total number of classes in the stream."""
        return len(self.class_order)

    @property
    def data_name(self) -> str:
        """Name of the underlying dataset."""
        return self.experiences[0].dataset.name

    def describe(self) -> dict:
        """JSON-able description: sizes, class order, classes per experience, parameters."""
        return {
            "scenario": self.scenario,
            "data": self.data_name,
            "num_experiences": len(self),
            "num_classes": self.num_classes,
            "class_order": list(self.class_order),
            "class_names": list(self.class_names),
            "classes_per_experience": [list(e.classes) for e in self.experiences],
            "train_sizes": [len(e.train_idx) for e in self.experiences],
            "test_sizes": [len(e.test_idx) for e in self.experiences],
            "task_ids": [e.task_id for e in self.experiences],
            "params": dict(self.params),
        }

    def fingerprint(self) -> str:
        """Short hash of the stream's content (indices, classes, transforms' descriptions)."""
        import hashlib

        h = hashlib.sha256()
        for e in self.experiences:
            h.update(np.asarray(e.train_idx, dtype=np.int64).tobytes())
            h.update(np.asarray(e.test_idx, dtype=np.int64).tobytes())
            h.update(repr((e.classes, e.task_id, getattr(e.transform, "spec", None))).encode())
        h.update(repr(self.class_order).encode())
        return h.hexdigest()[:16]


def class_order_map(order: Sequence[int], num_original: int) -> torch.Tensor:
    """Tensor mapping original label -> position in ``order`` (-1 for classes not in it)."""
    m = torch.full((num_original,), -1, dtype=torch.long)
    m[torch.as_tensor(list(order), dtype=torch.long)] = torch.arange(len(order))
    return m
