"""Datasets: the :class:`Dataset` type and loaders by name."""

from __future__ import annotations

from collections.abc import Callable

from lifelong.data.clinc150 import load_clinc150
from lifelong.data.dataset import Dataset, check_dataset, stratified_split
from lifelong.data.embedded import load_digits, load_mnist, make_blobs
from lifelong.data.kinds import DATA_KINDS, LOADER_KINDS, check_kind, dataset_kind, loader_kind
from lifelong.data.sampling import cycle_batches
from lifelong.data.textfile import load_text_file
from lifelong.errors import unknown_name
from lifelong.values import checked_kwargs

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "blobs": make_blobs,
    "clinc150": load_clinc150,
    "text-file": load_text_file,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(DATASETS)


def register_dataset(name: str, loader: Callable[..., Dataset], kind: str = "vectors") -> None:
    """Make ``loader`` available to :func:`load_dataset` and the CLI as ``name``.

    ``kind`` says what its inputs are (``pixels``, ``embeddings``, ``tokens``, ``vectors``:
    :data:`lifelong.data.kinds.DATA_KINDS`); methods pick their defaults for that kind.
    """
    LOADER_KINDS[name] = check_kind(kind)
    DATASETS[name] = loader


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load the dataset registered as ``name`` (see :func:`list_datasets`).

    Unknown or missing arguments and values of the wrong type stop with one
    :class:`~lifelong.errors.ConfigError` listing the valid keys; the loaded data is
    checked (:func:`~lifelong.data.dataset.check_dataset`: finite inputs, no class that
    only the test split holds).
    """
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    loader = DATASETS[name]
    return check_dataset(loader(**checked_kwargs(loader, kwargs, kind="dataset", name=name)))


__all__ = [
    "Dataset",
    "check_dataset",
    "DATASETS",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "DATA_KINDS",
    "dataset_kind",
    "loader_kind",
    "stratified_split",
    "load_digits",
    "load_mnist",
    "make_blobs",
    "load_clinc150",
    "load_text_file",
    "cycle_batches",
]
