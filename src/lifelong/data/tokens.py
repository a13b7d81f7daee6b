"""Tokenising a loaded text dataset into token ids, for methods that train inside a text backbone.

No model runs: the encoder's own tokenizer turns the sentences into float32 token-id rows,
right-padded with its pad id (``lora-seq`` / ``codyra`` with ``backbone="minilm"``).
``representation="tokens"`` of the text loaders gives this directly
(command line: ``--set data.representation=tokens``); :func:`text_token_dataset`
converts a dataset loaded with features, as long as it kept its raw sentences.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from lifelong.data.dataset import Dataset
from lifelong.data.texts import TextDataset
from lifelong.errors import ConfigError, DataError

if TYPE_CHECKING:
    from lifelong.data.feature_cache import Encoder

REPRESENTATIONS = ("features", "tokens")


def check_max_length(max_length: int) -> None:
    """Raise :class:`ConfigError` unless ``max_length`` is an integer of at least 2 tokens."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 2:
        raise ConfigError(f"max_length must be an integer >= 2 tokens, got {max_length!r}")


def check_representation(representation: str, encoder: Encoder | str | os.PathLike, max_length: int) -> None:
    """Raise :class:`ConfigError` for an unknown ``representation`` or a tokens request that cannot be met."""
    if representation not in REPRESENTATIONS:
        raise ConfigError(
            f"representation must be one of {REPRESENTATIONS} (features: frozen sentence vectors; "
            f"tokens: token ids for a text backbone), got {representation!r}"
        )
    if representation == "tokens":
        if not isinstance(encoder, (str, os.PathLike)):
            raise ConfigError(
                "representation='tokens' reads the tokenizer of the encoder, so give encoder as "
                "'minilm' or the path of a local Hugging Face model folder, not an encoder object"
            )
        check_max_length(max_length)


def tokenize_splits(
    texts: dict[str, Sequence[str]], encoder: str | os.PathLike = "minilm", max_length: int = 64
) -> tuple[dict[str, torch.Tensor], dict]:
    """Token ids of each split's sentences with ``encoder``'s own tokenizer; no model is run.

    Returns (split -> float32 ``(n, width)`` tensor of ids right-padded with the pad id,
    meta). All splits share one width: the longest tokenised sentence, at most
    ``max_length`` (longer ones are truncated, keeping the closing special token).
    ``meta`` holds ``tokenizer`` (the model folder), ``max_length``, ``pad_id`` and
    ``inputs="token ids"``. The inputs of ``lora-seq``'s text backbones (which pool
    like all-MiniLM-L6-v2, Reimers & Gurevych 2019).
    """
    from lifelong.encoders.text import resolve_encoder_path

    check_max_length(max_length)
    try:
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is in requirements.lock
        raise ConfigError("token ids need transformers; install it with `pip install lifelong[text]`") from e
    path = resolve_encoder_path(encoder)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = {
        s: tok(list(t), truncation=True, max_length=int(max_length))["input_ids"] if len(t) else []
        for s, t in texts.items()
    }
    width = max((len(row) for rows in ids.values() for row in rows), default=1)
    xs = {}
    for s, rows in ids.items():
        x = torch.full((len(rows), width), float(pad))
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        x[mask] = torch.tensor([i for r in rows for i in r], dtype=torch.float32)
        xs[s] = x
    return xs, {"tokenizer": str(path), "max_length": int(max_length), "pad_id": int(pad), "inputs": "token ids"}


def tokenize_dataset(texts: TextDataset, encoder: str | os.PathLike = "minilm", max_length: int = 64) -> Dataset:
    """``texts`` as a :class:`Dataset` of token ids (:func:`tokenize_splits`), named ``"<name>-tokens"``.

    ``meta`` is the loader's, then ``texts.citation`` and the tokenizer's meta; nothing
    is encoded or cached.
    """
    ids, tok_meta = tokenize_splits(
        {"train": texts.texts["train"], "test": texts.texts[texts.test_split]}, encoder, max_length
    )
    meta = dict(texts.meta)
    if texts.citation is not None:
        meta["citation"] = texts.citation
    meta.update(tok_meta)
    return texts.dataset(f"{texts.name}-tokens", ids["train"], ids["test"], meta)


def text_token_dataset(data: Dataset, encoder: str | os.PathLike = "minilm", max_length: int = 64) -> Dataset:
    """A copy of a text dataset whose inputs are token ids (float32, right-padded with the pad id).

    ``data`` must carry its raw sentences in ``meta["texts_train"]`` / ``meta["texts_test"]``
    (as :func:`lifelong.data.load_clinc150` and ``load_text_file`` do); labels, class
    names, coarse labels and domains are kept. Both splits are padded to the same width
    (the longest tokenised sentence, at most ``max_length``). Use it with
    ``lora-seq``'s text backbones: ``make_learner("lora-seq", {"backbone": "minilm"})``.
    The loaders give the same inputs directly, without encoding features first:
    ``load_dataset("clinc150", representation="tokens")`` (:func:`tokenize_splits`).
    """
    texts = {s: (data.meta or {}).get(f"texts_{s}") for s in ("train", "test")}
    if any(t is None for t in texts.values()):
        raise DataError(
            f"dataset {data.name!r} has no raw sentences in meta['texts_train'/'texts_test']; load it "
            "with load_dataset('clinc150') or load_dataset('text-file', ...)"
        )
    for s, t in texts.items():
        n = len(getattr(data, f"y_{s}"))
        if len(t) != n:
            raise DataError(f"dataset {data.name!r} has {len(t)} {s} sentences but {n} {s} labels")
    xs, tok_meta = tokenize_splits(texts, encoder, max_length)
    meta = {k: v for k, v in (data.meta or {}).items() if k not in ("oos_features",)}
    meta.update(tok_meta)
    return Dataset(
        f"{data.name}-tokens",
        xs["train"],
        data.y_train,
        xs["test"],
        data.y_test,
        list(data.class_names),
        coarse_labels=data.coarse_labels,
        domains_train=data.domains_train,
        domains_test=data.domains_test,
        meta=meta,
    )


__all__ = [
    "REPRESENTATIONS",
    "check_max_length",
    "check_representation",
    "text_token_dataset",
    "tokenize_dataset",
    "tokenize_splits",
]
