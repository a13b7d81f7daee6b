"""The feature cache: hit, miss, and recomputation of corrupt, truncated or foreign entries."""

import hashlib
import json
import os
import shutil
import time

import pytest
import torch

from lifelong.data.feature_cache import FeatureCache, cached_features, default_cache_dir, texts_hash

TEXTS = ["book a table for two", "what is my balance", "play some jazz", "cancel my order"]


class CountingEncoder:
    """A cheap deterministic stand-in for a frozen encoder that counts its calls."""

    def __init__(self, name="fake-a", dim=6, delay=0.0):
        self.fingerprint = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.identity = {"name": name}
        self.dim = dim
        self.calls = 0
        self.salt = name
        self.delay = delay  # seconds each call takes, like a real encoder's work

    def encode(self, texts):
        self.calls += 1
        time.sleep(self.delay)
        rows = [
            torch.Generator().manual_seed(int(hashlib.sha256((self.salt + t).encode()).hexdigest()[:8], 16))
            for t in texts
        ]
        return torch.stack([torch.randn(self.dim, generator=g) for g in rows])


def test_miss_then_hit_reads_the_same_features(tmp_path):
    enc = CountingEncoder(delay=1.0)
    cache = FeatureCache(tmp_path)
    x1, info1 = cache.features(enc, TEXTS, dataset="toy", split="train")
    x2, info2 = cache.features(enc, TEXTS, dataset="toy", split="train")
    assert enc.calls == 1  # the second load read the file: the encoder was not called again
    assert not info1.hit and info1.reason == "absent" and info1.encode_seconds >= 1.0
    assert info2.hit and info2.reason == "" and info2.encode_seconds == 0.0 and info2.load_seconds > 0.0
    st, js = cache.paths("toy", "train", cache.key(enc.fingerprint, texts_hash(TEXTS)))
    meta = json.loads(js.read_text())
    assert meta["encode_seconds"] == info1.encode_seconds  # the hit saved the recorded encoding time less the load
    assert info2.saved_seconds == pytest.approx(info1.encode_seconds - info2.load_seconds) and info2.saved_seconds > 0
    assert torch.equal(x1, x2) and x2.dtype == torch.float32
    assert st.is_file() and meta["rows"] == 4 and meta["dim"] == 6 and meta["encoder"] == {"name": "fake-a"}


def test_another_encoder_or_other_texts_miss(tmp_path):
    a, b = CountingEncoder("fake-a"), CountingEncoder("fake-b")
    xa, _ = cached_features(a, TEXTS, dataset="toy", split="train", cache_dir=tmp_path)
    xb, info = cached_features(b, TEXTS, dataset="toy", split="train", cache_dir=tmp_path)
    assert not info.hit and b.calls == 1 and not torch.equal(xa, xb)
    _, info = cached_features(a, TEXTS[:3], dataset="toy", split="train", cache_dir=tmp_path)
    assert not info.hit and a.calls == 2


def _entry(tmp_path, enc):
    cache = FeatureCache(tmp_path)
    return cache, cache.paths("toy", "train", cache.key(enc.fingerprint, texts_hash(TEXTS)))


def test_truncated_file_is_recomputed_and_rewritten(tmp_path):
    enc = CountingEncoder()
    cache, (st, _) = _entry(tmp_path, enc)
    x, _ = cache.features(enc, TEXTS, dataset="toy", split="train")
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    y, info = cache.features(enc, TEXTS, dataset="toy", split="train")
    assert not info.hit and info.reason.startswith("corrupt") and enc.calls == 2
    assert torch.equal(x, y)
    _, info = cache.features(enc, TEXTS, dataset="toy", split="train")
    assert info.hit  # the rewritten entry is whole again


def test_flipped_bytes_in_the_tensor_are_detected(tmp_path):
    enc = CountingEncoder()
    cache, (st, _) = _entry(tmp_path, enc)
    x, _ = cache.features(enc, TEXTS, dataset="toy", split="train")
    raw = bytearray(st.read_bytes())
    raw[-3] ^= 0xFF  # inside the tensor data, the header stays valid
    st.write_bytes(bytes(raw))
    y, info = cache.features(enc, TEXTS, dataset="toy", split="train")
    assert not info.hit and "hash" in info.reason and torch.equal(x, y)


def test_a_file_written_by_another_encoder_is_never_reused(tmp_path):
    a, b = CountingEncoder("fake-a"), CountingEncoder("fake-b")
    cache, (st_a, js_a) = _entry(tmp_path, a)
    _, (st_b, js_b) = _entry(tmp_path, b)
    cache.features(b, TEXTS, dataset="toy", split="train")
    shutil.copy(st_b, st_a)  # b's entry planted where a's belongs
    shutil.copy(js_b, js_a)
    x, info = cache.features(a, TEXTS, dataset="toy", split="train")
    assert not info.hit and info.reason.startswith("mismatch: encoder_fingerprint") and a.calls == 1
    assert torch.equal(x, a.encode(TEXTS))


def test_garbage_metadata_is_recomputed(tmp_path):
    enc = CountingEncoder()
    cache, (_, js) = _entry(tmp_path, enc)
    cache.features(enc, TEXTS, dataset="toy", split="train")
    js.write_text("{not json")
    _, info = cache.features(enc, TEXTS, dataset="toy", split="train")
    assert not info.hit and info.reason.startswith("corrupt")


def test_cache_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LIFELONG_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    enc = CountingEncoder()
    cached_features(enc, TEXTS, dataset="toy", split="test")
    assert len(list((tmp_path / "elsewhere").glob("toy-test-*.safetensors"))) == 1
    monkeypatch.delenv("LIFELONG_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "lifelong", "features")


def test_disabled_cache_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFELONG_CACHE", str(tmp_path))
    enc = CountingEncoder()
    _, info = cached_features(enc, TEXTS, dataset="toy", split="train", cache_dir=False)
    assert not info.hit and os.listdir(tmp_path) == []


def test_refresh_reencodes(tmp_path):
    enc = CountingEncoder()
    cached_features(enc, TEXTS, dataset="toy", split="train", cache_dir=tmp_path)
    _, info = cached_features(enc, TEXTS, dataset="toy", split="train", cache_dir=tmp_path, refresh=True)
    assert not info.hit and info.reason == "refresh" and enc.calls == 2


def test_bad_encoder_output_is_refused(tmp_path):
    class Broken(CountingEncoder):
        def encode(self, texts):
            return torch.full((len(texts), 3), float("nan"))

    with pytest.raises(ValueError, match="NaN"):
        cached_features(Broken(), TEXTS, dataset="toy", split="train", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
