"""Test-wide settings: one torch thread (fast and stable on 2-core machines), no progress bars."""

import hashlib
import os

import pytest

os.environ.setdefault("LIFELONG_THREADS", "1")
# the workspace's real data (../shared/data beside the repository), where the library looks for it: LIFELONG_DATA
_SHARED_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data"
)
if os.path.isdir(_SHARED_DATA):
    os.environ.setdefault("LIFELONG_DATA", _SHARED_DATA)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(int(os.environ["LIFELONG_THREADS"]))
    yield


@pytest.fixture
def blobs():
    """Four well-separated Gaussian classes in 8 dimensions."""
    from lifelong.data import make_blobs

    return make_blobs(num_classes=4, per_class=40, dim=8, seed=0)


def shared_path(*parts: str) -> str:
    """Path under the workspace's shared/ folder (../shared from the repo root)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(os.path.dirname(root), "shared", *parts)


CLINC = shared_path("data", "clinc150")
needs_clinc = pytest.mark.skipif(
    not os.path.isfile(os.path.join(CLINC, "data_full.json")),
    reason="the shared CLINC150 copy is not next to the repository",
)


class HashEncoder:
    """Deterministic fake sentence encoder (8-d vectors from each text's hash): no model, instant."""

    fingerprint = "hash-encoder-v1"
    identity = {"name": "hash"}

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        import numpy as np
        import torch

        self.calls += 1
        b = np.frombuffer(b"".join(hashlib.sha256(t.encode()).digest()[:8] for t in texts), dtype=np.uint8)
        return torch.tensor(b.reshape(len(texts), 8), dtype=torch.float32) / 255.0


def interrupt_learning_at(monkeypatch, cls, index: int) -> None:
    """Make ``cls.learn`` raise KeyboardInterrupt (a Ctrl-C) at experience ``index``; undo with monkeypatch.undo."""
    original = cls.learn

    def dies(self, experience):
        if experience.index == index:
            raise KeyboardInterrupt
        return original(self, experience)

    monkeypatch.setattr(cls, "learn", dies)
