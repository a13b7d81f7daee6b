"""Test-wide settings: one torch thread (fast and stable on 2-core machines), no progress bars."""

import os

import pytest

os.environ.setdefault("LIFELONG_THREADS", "1")


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
