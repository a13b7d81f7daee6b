"""The one labelled-data type every loader returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from lifelong.errors import DataError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass
class Dataset:
    """Labelled examples split into train and test, with class names.

    Inputs are float32 tensors of shape ``(n, *input_shape)``; labels are int64 in
    ``[0, num_classes)``. Scenarios index into these tensors and never copy them.

    Attributes:
        name: dataset name (``"mnist"``).
        x_train, y_train, x_test, y_test: the two splits.
        class_names: one name per class id.
        coarse_labels: optional mapping class id -> coarse class id (class hierarchy).
        domains_train, domains_test: optional per-example domain ids.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    coarse_labels: list[int] | None = None
    domains_train: torch.Tensor | None = None
    domains_test: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{self.name}: {split} inputs have {x.shape[0]} rows but labels {y.shape[0]}")
            if x.shape[0] == 0:
                raise DataError(f"{self.name}: the {split} split is empty; give it at least one example")
            if y.dtype != torch.int64:
                raise DataError(f"{self.name}: {split} labels must be int64, got {y.dtype}")
            if y.min() < 0 or y.max() >= len(self.class_names):
                raise DataError(
                    f"{self.name}: {split} labels must lie in [0, {len(self.class_names)}), "
                    f"got [{int(y.min())}, {int(y.max())}]; give one class name per label"
                )
            require_finite(x, f"{self.name}: the {split} split")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train inputs {tuple(self.x_train.shape[1:])} and test inputs "
                f"{tuple(self.x_test.shape[1:])} differ in shape"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x_train.shape[1:])

    @classmethod
    def from_arrays(
        cls,
        name: str,
        x: ArrayLike,
        y: ArrayLike,
        class_names: Sequence[str] | None = None,
        *,
        test_fraction: float = 0.2,
        seed: int = 0,
        **kwargs,
    ) -> Dataset:
        """Build a dataset from one labelled array pair with a stratified split.

        ``x``: array-like ``(n, ...)``; ``y``: integer labels. The split is
        deterministic in ``seed`` and keeps each class's proportion.
        """
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        y_np = np.asarray(y)
        if y_np.ndim != 1 or len(y_np) != len(x):
            raise DataError(f"{name}: labels must be a 1-D array with one label per input")
        y = torch.as_tensor(y_np.astype(np.int64))
        if class_names is None:
            class_names = [str(c) for c in range(int(y.max()) + 1)]
        train_idx, test_idx = stratified_split(y_np, test_fraction, seed)
        return cls(name, x[train_idx], y[train_idx], x[test_idx], y[test_idx], list(class_names), **kwargs)


def require_finite(x: torch.Tensor, what: str) -> None:
    """Raise :class:`DataError` naming ``what`` and the bad row count when float inputs hold NaN or inf."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise DataError(
            f"{what} holds NaN or infinite values in {bad} input(s); clean or drop those rows (e.g. torch.nan_to_num)"
        )


def check_dataset(data: Dataset) -> Dataset:
    """``data`` after the checks a loaded dataset must pass; a :class:`DataError` naming the fix otherwise.

    No class may occur only in the test split: no learner can predict a class it never
    trained on, so such a run would report 0 % on it everywhere. (Finite inputs are
    checked when a :class:`Dataset` is built.)
    """
    only_test = sorted(set(torch.unique(data.y_test).tolist()) - set(torch.unique(data.y_train).tolist()))
    if only_test:
        names = [data.class_names[c] for c in only_test[:5]]
        raise DataError(
            f"{data.name}: {len(only_test)} class(es) occur only in the test split "
            f"({', '.join(map(repr, names))}{' ...' if len(only_test) > 5 else ''}); add training "
            "examples of them or drop those test examples"
        )
    return data


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split of indices: each class gives ``round(test_fraction * n_c)`` to test."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_test = int(round(test_fraction * len(idx)))
        n_test = min(max(n_test, 1), len(idx) - 1) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def data_input_kind(dataset: Dataset) -> str:
    """The kind of input a dataset holds: ``"tokens"`` (token ids of a text encoder) or ``"features"``."""
    return "tokens" if (getattr(dataset, "meta", None) or {}).get("inputs") == "token ids" else "features"
