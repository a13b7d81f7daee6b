"""A disk cache of frozen-encoder features (DESIGN §4).

A frozen encoder gives the same vectors every time, so features are computed once per (encoder, dataset,
split) and later runs read them, not the text. Each entry in ``LIFELONG_CACHE`` (else
``~/.cache/lifelong/features``) is ``<dataset>-<split>-<key>.safetensors`` (float32 ``features (n, dim)``)
plus a ``.json`` with the encoder's identity, the texts' SHA-256, the shape, the tensor bytes' SHA-256 and the
encoding time. The key hashes the encoder's :attr:`fingerprint` and the texts. A read checks every recorded
fact: a truncated, corrupt, mismatched or foreign file is recomputed, never reused. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from lifelong.errors import ConfigError
from lifelong.fileio import default_mode

FORMAT_VERSION = 1


class Encoder(Protocol):
    """What the cache needs from an encoder."""

    fingerprint: str

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


def default_cache_dir() -> Path:
    """``LIFELONG_CACHE`` if set, else ``~/.cache/lifelong/features``."""
    env = os.environ.get("LIFELONG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lifelong" / "features"


def texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 of a list of strings (each length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _tensor_hash(x: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "data"


@dataclass
class CacheInfo:
    """What one cache lookup did: whether it hit, and the seconds spent and saved.

    ``encode_seconds`` is the time spent encoding in this call (0 on a hit; it includes
    the load of a lazily loaded model, which a hit also saves);
    ``load_seconds`` the time to read the file (0 on a miss); ``saved_seconds`` the
    encoding time recorded when the entry was written minus ``load_seconds`` (0 on a
    miss); ``reason`` says why a miss happened (``"absent"``, ``"corrupt: ..."``,
    ``"mismatch: ..."``, ``"refresh"``).
    """

    hit: bool
    encode_seconds: float
    load_seconds: float
    saved_seconds: float
    path: str
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-able form (for ``Dataset.meta``)."""
        return {
            "hit": self.hit,
            "encode_seconds": self.encode_seconds,
            "load_seconds": self.load_seconds,
            "saved_seconds": self.saved_seconds,
            "path": self.path,
            "reason": self.reason,
        }


class FeatureCache:
    """Features of a frozen encoder on disk, keyed by encoder identity and text content."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def key(self, fingerprint: str, text_sha: str) -> str:
        """The 24-hex-digit key of (encoder fingerprint, texts' hash)."""
        return hashlib.sha256(f"v{FORMAT_VERSION}|{fingerprint}|{text_sha}".encode()).hexdigest()[:24]

    def paths(self, dataset: str, split: str, key: str) -> tuple[Path, Path]:
        """(safetensors path, JSON path) of one entry."""
        stem = f"{_slug(dataset)}-{_slug(split)}-{key}"
        return self.dir / f"{stem}.safetensors", self.dir / f"{stem}.json"

    # ---- read -----------------------------------------------------------------------
    def _read(self, st_path: Path, js_path: Path, expect: dict) -> tuple[torch.Tensor | None, str, dict]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not st_path.is_file() or not js_path.is_file():
            return None, "absent", {}
        try:
            meta = json.loads(js_path.read_text())
        except (OSError, ValueError) as e:
            return None, f"corrupt: metadata unreadable ({e})", {}
        for k, v in expect.items():
            if meta.get(k) != v:
                return None, f"mismatch: {k} is {meta.get(k)!r}, expected {v!r}", meta
        try:
            tensors = load_file(str(st_path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            return None, f"corrupt: {e}", meta
        x = tensors.get("features")
        if x is None or set(tensors) != {"features"}:
            return None, "corrupt: the file does not hold exactly one 'features' tensor", meta
        if x.dtype != torch.float32 or list(x.shape) != [meta.get("rows"), meta.get("dim")]:
            return None, f"corrupt: tensor {x.dtype} {tuple(x.shape)} disagrees with the metadata", meta
        if _tensor_hash(x) != meta.get("tensor_sha256"):
            return None, "corrupt: tensor bytes do not match their recorded hash", meta
        return x, "", meta

    # ---- write ----------------------------------------------------------------------
    def _write(self, st_path: Path, js_path: Path, x: torch.Tensor, meta: dict) -> None:
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        for path, writer in (
            (st_path, lambda p: save_file({"features": x.contiguous()}, p, metadata={"lifelong": "features"})),
            (js_path, lambda p: Path(p).write_text(json.dumps(meta, indent=1, sort_keys=True))),
        ):
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=path.suffix)
            os.close(fd)
            try:
                writer(tmp)
                os.chmod(tmp, default_mode())  # mkstemp's 0600 would hide the cache from the user's group
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    # ---- lookups ----------------------------------------------------------------------
    def _expect(self, fingerprint: str, text_sha: str, rows: int) -> dict:
        return {"format": FORMAT_VERSION, "encoder_fingerprint": fingerprint, "texts_sha256": text_sha, "rows": rows}

    def get(
        self, encoder: Encoder, texts: Sequence[str], *, dataset: str, split: str
    ) -> tuple[torch.Tensor | None, CacheInfo]:
        """Read-only lookup: ``(features or None, CacheInfo)``; never encodes or writes."""
        texts = list(texts)
        fingerprint, text_sha = str(encoder.fingerprint), texts_hash(texts)
        st_path, js_path = self.paths(dataset, split, self.key(fingerprint, text_sha))
        t0 = time.perf_counter()
        x, reason, meta = self._read(st_path, js_path, self._expect(fingerprint, text_sha, len(texts)))
        if x is None:
            return None, CacheInfo(False, 0.0, 0.0, 0.0, str(st_path), reason)
        load = time.perf_counter() - t0
        saved = max(0.0, float(meta.get("encode_seconds", 0.0)) - load)
        return x, CacheInfo(True, 0.0, load, saved, str(st_path))

    def features(
        self, encoder: Encoder, texts: Sequence[str], *, dataset: str, split: str, refresh: bool = False
    ) -> tuple[torch.Tensor, CacheInfo]:
        """Features of ``texts`` under ``encoder``: read from the cache, or encoded and stored.

        Returns ``(float32 tensor (n, dim), CacheInfo)``. ``refresh=True`` always
        re-encodes and rewrites the entry.
        """
        texts = list(texts)
        reason = "refresh"
        if not refresh:
            x, info = self.get(encoder, texts, dataset=dataset, split=split)
            if x is not None:
                return x, info
            reason = info.reason
        fingerprint = str(encoder.fingerprint)
        text_sha = texts_hash(texts)
        st_path, js_path = self.paths(dataset, split, self.key(fingerprint, text_sha))
        expect = self._expect(fingerprint, text_sha, len(texts))
        t0 = time.perf_counter()
        x = encoder.encode(texts)
        seconds = time.perf_counter() - t0
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] != len(texts):
            raise ConfigError(
                f"encoder {fingerprint} returned {getattr(x, 'shape', type(x))}; expected a "
                f"(n={len(texts)}, dim) tensor"
            )
        x = x.detach().to(torch.float32).contiguous()
        if not bool(torch.isfinite(x).all()):
            raise ConfigError(
                f"encoder {fingerprint} produced NaN/inf features for {dataset}/{split}; try precision='fp32'"
            )
        identity = getattr(encoder, "identity", {"fingerprint": fingerprint})
        meta = dict(
            expect,
            dim=int(x.shape[1]),
            tensor_sha256=_tensor_hash(x),
            encode_seconds=seconds,
            dataset=dataset,
            split=split,
            encoder=identity,
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        self._write(st_path, js_path, x, meta)
        return x, CacheInfo(False, seconds, 0.0, 0.0, str(st_path), reason)


def cached_features(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    dataset: str,
    split: str,
    cache_dir: str | os.PathLike | None | bool = None,
    refresh: bool = False,
) -> tuple[torch.Tensor, CacheInfo]:
    """Features of ``texts`` from the cache in ``cache_dir`` (see :class:`FeatureCache`).

    ``cache_dir=False`` disables the cache (always encodes, writes nothing).
    """
    if cache_dir is False:
        t0 = time.perf_counter()
        x = encoder.encode(list(texts)).detach().to(torch.float32).contiguous()
        return x, CacheInfo(False, time.perf_counter() - t0, 0.0, 0.0, "", "cache disabled")
    return FeatureCache(None if cache_dir is None or cache_dir is True else cache_dir).features(
        encoder, texts, dataset=dataset, split=split, refresh=refresh
    )


def summarize(infos: dict[str, CacheInfo]) -> dict:
    """The ``Dataset.meta["feature_cache"]`` record: overall hit and seconds, plus each split's info."""
    values = list(infos.values())
    return {
        "hit": all(i.hit for i in values),
        "encode_seconds": float(np.sum([i.encode_seconds for i in values])),
        "load_seconds": float(np.sum([i.load_seconds for i in values])),
        "saved_seconds": float(np.sum([i.saved_seconds for i in values])),
        "splits": {k: v.to_dict() for k, v in infos.items()},
    }


__all__ = ["FeatureCache", "CacheInfo", "cached_features", "default_cache_dir", "texts_hash", "summarize"]
