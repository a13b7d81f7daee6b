"""Any labelled text file (CSV, TSV, JSON, JSON Lines): the reader and the ``text-file`` loader.

:func:`read_text_file` reads the rows as they are; :func:`text_file_texts` numbers the
classes and splits off a test set; :func:`load_text_file` then encodes the sentences
(:mod:`lifelong.data.encode`) or tokenises them (:mod:`lifelong.data.tokens`).
Command line: ``lifelong run --data text-file --set data.path=intents.csv``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lifelong.data.dataset import Dataset, stratified_split
from lifelong.data.encode import encode_dataset
from lifelong.data.feature_cache import Encoder
from lifelong.data.texts import TextDataset
from lifelong.data.tokens import check_representation, tokenize_dataset
from lifelong.errors import ConfigError, DataError

TEXT_FORMATS = ("csv", "tsv", "json", "jsonl")
_FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass
class TextTable:
    """Rows of a labelled text file: texts, label values and optional coarse values (as read)."""

    path: Path
    texts: list[str]
    labels: list
    coarse: list | None = None
    columns: list[str] = field(default_factory=list)


def read_text_file(
    path: str | os.PathLike,
    *,
    text_column: str | int = "text",
    label_column: str | int = "label",
    coarse_column: str | int | None = None,
    format: str | None = None,
    json_key: str | None = None,
) -> TextTable:
    """Read texts and labels from a CSV, TSV, JSON or JSON Lines file.

    CSV/TSV files need a header row naming the columns. JSON files hold a list of
    objects (or of ``[text, label]`` lists, columns then given by position), or an
    object whose ``json_key`` entry is such a list. JSON Lines files hold one object
    per line. Raises :class:`DataError` naming the file and row for a missing file,
    a missing column, an empty text or a missing label.
    """
    path = Path(path).expanduser()
    if format is not None and format not in TEXT_FORMATS:
        raise ConfigError(f"unknown text format {format!r}; give format= one of {TEXT_FORMATS}")
    fmt = format or _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt not in TEXT_FORMATS:
        raise ConfigError(
            f"cannot tell the format of {path}; name it .csv/.tsv/.json/.jsonl or pass format= one of {TEXT_FORMATS}"
        )
    if not path.is_file():
        raise DataError(
            f"text file {path} does not exist; give the path of a {fmt.upper()} file with a "
            f"{text_column!r} and a {label_column!r} column"
        )
    try:
        rows = _read_rows(path, fmt, json_key)
    except (OSError, ValueError, csv.Error) as e:
        raise DataError(f"{path} is not a readable {fmt.upper()} file: {e}") from e
    if not rows:
        raise DataError(f"{path} holds no rows; give at least one labelled text")
    columns = list(rows[0].keys()) if isinstance(rows[0], dict) else list(range(len(rows[0])))
    if not isinstance(rows[0], dict):
        text_column = 0 if text_column == "text" else text_column
        label_column = 1 if label_column == "label" else label_column
    wanted = [("text", text_column), ("label", label_column)]
    if coarse_column is not None:
        wanted.append(("coarse", coarse_column))
    cols: dict[str, list] = {}
    for role, col in wanted:
        values = []
        for r, row in enumerate(rows):
            try:
                v = row[col]
            except (KeyError, IndexError, TypeError):
                raise DataError(
                    f"{path}: row {r + 1} has no {role} column {col!r}; columns found: "
                    f"{', '.join(map(str, columns))}. Name the right one with "
                    f"{role}_column=..."
                ) from None
            if v is None or (isinstance(v, str) and not v.strip()):
                what = "text" if role == "text" else f"{role} value"
                raise DataError(
                    f"{path}: row {r + 1} has an empty {what} in column {col!r}; fill it in or remove the row"
                )
            values.append(v)
        cols[role] = values
    return TextTable(path, [str(t) for t in cols["text"]], cols["label"], cols.get("coarse"), [str(c) for c in columns])


def _read_rows(path: Path, fmt: str, json_key: str | None) -> list:
    if fmt in ("csv", "tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ","))
    if fmt == "jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError as e:
                        raise ValueError(f"line {n}: {e}") from None
        return rows
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        if json_key is None or json_key not in data:
            raise ValueError(f"the top level is an object; pass json_key= one of {sorted(data)}")
        data = data[json_key]
    if not isinstance(data, list):
        raise ValueError("expected a list of rows")
    return data


def _label_order(values: list) -> list:
    """Unique label values, numeric order when all are integers, else sorted as strings."""
    uniq = sorted({str(v) for v in values})
    if all(re.fullmatch(r"-?\d+", u) for u in uniq):
        return sorted(uniq, key=int)
    return uniq


def text_file_texts(
    path: str | os.PathLike,
    *,
    text_column: str | int = "text",
    label_column: str | int = "label",
    coarse_column: str | int | None = None,
    test_path: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str | None = None,
    format: str | None = None,
    json_key: str | None = None,
) -> TextDataset:
    """The sentences and class ids of a labelled text file (see :func:`load_text_file` for the options)."""
    kw = dict(
        text_column=text_column,
        label_column=label_column,
        coarse_column=coarse_column,
        format=format,
        json_key=json_key,
    )
    train = read_text_file(path, **kw)
    test = read_text_file(test_path, **kw) if test_path is not None else None
    name = name or train.path.stem
    labels = train.labels + (test.labels if test else [])
    names = _label_order(labels)
    coarse_names = None
    if coarse_column is not None:
        coarse_vals = train.coarse + (test.coarse if test else [])
        parent: dict[str, str] = {}
        for lab, c in zip(map(str, labels), map(str, coarse_vals)):
            if parent.setdefault(lab, c) != c:
                raise DataError(
                    f"{train.path}: label {lab!r} appears under two coarse values "
                    f"({parent[lab]!r} and {c!r}); each label needs one parent"
                )
        coarse_names = _label_order(list(parent.values()))
        names = sorted(names, key=lambda n: (coarse_names.index(parent[n]), names.index(n)))
    cid = {n: i for i, n in enumerate(names)}
    y = np.array([cid[str(v)] for v in train.labels], dtype=np.int64)
    if test is None:
        if len(names) < 1 or min(np.bincount(y)) < 2:
            raise DataError(
                f"{train.path}: every label needs at least 2 rows to split off a test set; give test_path= or more rows"
            )
        tr, te = stratified_split(y, test_fraction, seed)
        texts = {"train": [train.texts[i] for i in tr], "test": [train.texts[i] for i in te]}
        y_tr, y_te = y[tr], y[te]
    else:
        only_test = sorted({str(v) for v in test.labels} - {str(v) for v in train.labels})
        if only_test:
            raise DataError(
                f"{test.path} has {len(only_test)} label(s) that never occur in {train.path}: "
                f"{', '.join(map(repr, only_test[:5]))}{' ...' if len(only_test) > 5 else ''}; no "
                "learner can predict a class it never trained on, so add training rows for them or "
                "drop those test rows"
            )
        texts = {"train": train.texts, "test": test.texts}
        y_tr, y_te = y, np.array([cid[str(v)] for v in test.labels], dtype=np.int64)
    coarse = [coarse_names.index(parent[n]) for n in names] if coarse_names else None
    meta = {
        "source": str(train.path),
        "test_source": str(test.path) if test else None,
        "texts_train": texts["train"],
        "texts_test": texts["test"],
        "coarse_names": coarse_names,
        "source_files": [str(t.path.resolve()) for t in (train, test) if t is not None],
    }
    return TextDataset(name, texts, torch.as_tensor(y_tr), torch.as_tensor(y_te), names, coarse, meta)


# ``Encoder`` first in ``encoder``'s annotation, as in load_clinc150 (lifelong.values keeps a Path a Path).
def load_text_file(
    path: str | os.PathLike,
    *,
    text_column: str | int = "text",
    label_column: str | int = "label",
    coarse_column: str | int | None = None,
    test_path: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str | None = None,
    format: str | None = None,
    json_key: str | None = None,
    encoder: Encoder | str | os.PathLike = "minilm",
    cache_dir: str | os.PathLike | None | bool = None,
    precision: str = "fp32",
    threads: int | None = None,
    batch_size: int = 128,
    progress: bool | None = None,
    refresh: bool = False,
    representation: str = "features",
    max_length: int = 64,
) -> Dataset:
    """Any labelled text file (CSV/TSV/JSON/JSONL) as cached sentence features (or token ids).

    Class ids follow the sorted label values (numeric order for integer labels); with
    ``coarse_column`` they are grouped by coarse value first and ``coarse_labels``
    is set (a class must have one coarse value). Without ``test_path`` a stratified
    ``test_fraction`` of each class becomes the test split (seeded by ``seed``).
    Python: ``load_dataset("text-file", path="intents.csv", label_column="intent")``;
    command line: ``lifelong run --data text-file --set data.path=intents.csv``.
    ``representation="tokens"`` returns ``encoder``'s token ids (at most ``max_length``;
    :func:`~lifelong.data.tokens.tokenize_splits`) without running the encoder, named
    ``"<name>-tokens"``, for text backbones (``lora-seq``/``codyra`` with ``backbone="minilm"``).
    """
    check_representation(representation, encoder, max_length)
    texts = text_file_texts(
        path,
        text_column=text_column,
        label_column=label_column,
        coarse_column=coarse_column,
        test_path=test_path,
        test_fraction=test_fraction,
        seed=seed,
        name=name,
        format=format,
        json_key=json_key,
    )
    if representation == "tokens":
        return tokenize_dataset(texts, encoder, max_length)
    return encode_dataset(
        texts,
        encoder,
        cache_dir=cache_dir,
        refresh=refresh,
        precision=precision,
        threads=threads,
        batch_size=batch_size,
        progress=progress,
    )


__all__ = ["load_text_file", "read_text_file", "text_file_texts", "TextTable", "TEXT_FORMATS"]
