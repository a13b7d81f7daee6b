"""Encoding a loaded text dataset into frozen sentence vectors, through the feature cache.

The encoder is all-MiniLM-L6-v2 by default (:mod:`lifelong.encoders.text`); features are
cached per dataset and split (:mod:`lifelong.data.feature_cache`), so a second load reads
them from disk, and a subsample of a split whose complete features are cached takes its
rows from there instead of encoding anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from lifelong.data.dataset import Dataset
from lifelong.data.feature_cache import CacheInfo, Encoder, FeatureCache, cached_features, summarize
from lifelong.data.texts import TextDataset


def make_encoder(
    encoder: Encoder | str | os.PathLike,
    precision: str = "fp32",
    threads: int | None = None,
    batch_size: int = 128,
    progress: bool | None = None,
) -> Encoder:
    """A ready encoder (anything with ``encode`` and ``fingerprint``) or a TextEncoder by name/path."""
    from lifelong.encoders.text import make_text_encoder  # transformers loads only when features are encoded

    return make_text_encoder(encoder, precision=precision, threads=threads, batch_size=batch_size, progress=progress)


def encode_splits(
    encoder: Encoder,
    dataset: str,
    texts: dict[str, list[str]],
    *,
    cache_dir: str | os.PathLike | None | bool = None,
    full: dict[str, list[str]] | None = None,
    refresh: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, CacheInfo]]:
    """Encode each split's texts through the feature cache; returns (features, cache info) per split.

    ``full`` optionally gives, per split, the complete split the texts were subsampled
    from: when that complete split is already cached, the subset's rows are read from
    it instead of being encoded. ``cache_dir=False`` disables the cache.
    """
    out, infos = {}, {}
    for split, t in texts.items():
        if cache_dir is not False and not refresh and full and split in full and len(full[split]) > len(t):
            hit = _subset_from_full(encoder, dataset, split, t, full[split], cache_dir)
            if hit is not None:
                out[split], infos[split] = hit
                continue
        out[split], infos[split] = cached_features(
            encoder, t, dataset=dataset, split=split, cache_dir=cache_dir, refresh=refresh
        )
    return out, infos


def _subset_from_full(
    encoder: Encoder,
    dataset: str,
    split: str,
    texts: Sequence[str],
    full_texts: Sequence[str],
    cache_dir: str | os.PathLike | None | bool,
):
    """Rows of ``texts`` read from the cached features of ``full_texts``, or None when not cached."""
    cache = FeatureCache(None if cache_dir in (None, True) else cache_dir)
    x, info = cache.get(encoder, full_texts, dataset=dataset, split=split)
    if x is None:
        return None
    pos: dict[str, int] = {}
    for i, s in enumerate(full_texts):
        pos.setdefault(s, i)
    if any(s not in pos for s in texts):
        return None
    rows = torch.tensor([pos[s] for s in texts], dtype=torch.long)
    saved = max(0.0, (info.saved_seconds + info.load_seconds) * len(texts) / len(full_texts) - info.load_seconds)
    return x.index_select(0, rows), CacheInfo(
        True, 0.0, info.load_seconds, saved, info.path, "rows of the cached full split"
    )


def encode_dataset(
    texts: TextDataset,
    encoder: Encoder | str | os.PathLike = "minilm",
    *,
    cache_dir: str | os.PathLike | None | bool = None,
    refresh: bool = False,
    precision: str = "fp32",
    threads: int | None = None,
    batch_size: int = 128,
    progress: bool | None = None,
    extra_features: dict[str, dict[str, tuple[str, list[str]]]] | None = None,
) -> Dataset:
    """``texts`` as a :class:`Dataset` of sentence vectors, named like ``texts``.

    Features are cached under ``texts.name`` and the split names of ``texts.texts``.
    ``meta`` gets the encoder's ``identity`` (or fingerprint), ``texts.citation`` and
    ``feature_cache`` (hit and seconds per split). ``extra_features`` encodes further
    sentences with the same encoder and cache, outside the splits (CLINC150's
    out-of-scope queries): ``{meta key: {name: (cache split, sentences)}}`` puts
    ``{name: features}`` into ``meta[meta key]``.
    """
    enc = make_encoder(encoder, precision, threads, batch_size, progress)
    feats, infos = encode_splits(enc, texts.name, texts.texts, cache_dir=cache_dir, full=texts.full, refresh=refresh)
    meta = dict(texts.meta, encoder=getattr(enc, "identity", {"fingerprint": enc.fingerprint}))
    if texts.citation is not None:
        meta["citation"] = texts.citation
    for key, parts in (extra_features or {}).items():
        x, more = encode_splits(
            enc, texts.name, {split: t for split, t in parts.values()}, cache_dir=cache_dir, refresh=refresh
        )
        meta[key] = {name: x[split] for name, (split, _) in parts.items()}
        infos.update(more)
    meta["feature_cache"] = summarize(infos)
    return texts.dataset(texts.name, feats["train"], feats[texts.test_split], meta)


__all__ = ["encode_dataset", "encode_splits", "make_encoder"]
