"""Prototype classifiers: class means (and class Gaussians) of feature vectors.

:class:`PrototypeHead` keeps a running sum and count of features per class and scores inputs against the
class means by cosine similarity or negative Euclidean distance: the classifier of nearest-class-mean
(iCaRL), SimpleCIL and APER (arXiv 2303.07338) and prototypical few-shot learners. :class:`ClassGaussians`
adds a covariance per class and samples pseudo-features from N(mean_c, cov_c), as SLCA's classifier
alignment does (arXiv 2303.05118). Both hold plain tensors (no ``nn.Module``), stored in safetensors
checkpoints with :meth:`state` / :meth:`load`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lifelong.errors import CheckpointError, ConfigError, DataError

METRICS = ("cosine", "euclidean")


def _check_labels(labels: torch.Tensor, features: torch.Tensor, num_classes: int) -> None:
    if features.ndim != 2 or labels.ndim != 1 or len(labels) != len(features):
        raise DataError(
            f"expected features (n, d) and labels (n,), got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}; flatten the features and give one label per row"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]; "
            "build the head with the stream's number of classes"
        )


class PrototypeHead:
    """Running per-class feature sums and counts; prototypes are the class means.

    Sums are kept in float64 so that adding experiences one by one gives the same
    means as computing them in one pass. Classes without any feature have a zero
    prototype and score like any other: callers mask unseen classes.

    Args:
        num_classes: number of classes of the stream (rows of the prototype matrix).
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ConfigError(f"a prototype head needs at least one class, got {num_classes}")
        self.num_classes = int(num_classes)
        self.sums: torch.Tensor | None = None  # (C, d) float64, allocated at the first update
        self.counts = torch.zeros(self.num_classes, dtype=torch.float64)

    @property
    def dim(self) -> int | None:
        """Feature dimension (``None`` before the first update)."""
        return None if self.sums is None else int(self.sums.shape[1])

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``features`` (n, d) of classes ``labels`` (n,) to the running sums."""
        _check_labels(labels, features, self.num_classes)
        f = features.detach().to(torch.float64)
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, f.shape[1], dtype=torch.float64)
        elif f.shape[1] != self.sums.shape[1]:
            raise DataError(
                f"features have {f.shape[1]} dimensions but the prototypes {self.sums.shape[1]}; "
                "use the same feature function for every experience"
            )
        self.sums.index_add_(0, labels, f)
        self.counts.index_add_(0, labels, torch.ones(len(labels), dtype=torch.float64))

    def means(self) -> torch.Tensor:
        """Prototype matrix (C, d), float64: the mean feature of each class (zeros for unseen classes)."""
        if self.sums is None:
            raise DataError("the prototype head has no features yet; call update() first")
        return self.sums / self.counts.clamp(min=1).unsqueeze(1)

    def scores(self, features: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
        """Scores (n, C), float64: cosine similarity to each prototype, or negative Euclidean distance."""
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {metric!r}")
        means = self.means()
        f = features.to(torch.float64)
        if metric == "cosine":
            return F.normalize(f, dim=1) @ F.normalize(means, dim=1).T
        return -torch.cdist(f, means)

    def state(self) -> dict:
        """Tensors for a checkpoint (``sums`` is an empty tensor before the first update)."""
        return {"sums": self.sums if self.sums is not None else torch.zeros(0), "counts": self.counts}

    def load(self, state: dict) -> None:
        """Restore :meth:`state`; raises :class:`CheckpointError` on a mismatch and changes nothing."""
        try:
            sums, counts = state["sums"].to(torch.float64), state["counts"].to(torch.float64)
        except (KeyError, AttributeError) as e:
            raise CheckpointError(f"prototype state is missing or malformed: {e}") from e
        if counts.shape != (self.num_classes,) or (sums.numel() and sums.shape[0] != counts.shape[0]):
            raise CheckpointError(
                f"prototype state has {tuple(sums.shape)} sums and {tuple(counts.shape)} counts; "
                f"expected {self.num_classes} classes"
            )
        self.sums = sums.clone() if sums.numel() else None
        self.counts = counts.clone()


class ClassGaussians:
    """Mean and covariance of the features of each class; samples pseudo-features.

    Used by SLCA's classifier alignment (Zhang et al. 2023): after each experience
    the statistics of its classes are stored (``cov + ridge * I`` as in the official
    code, ridge 1e-4), and later the head is re-trained on samples from the
    Gaussians of all classes seen so far. Statistics of a class are set once, from
    the features of the experience that introduced it.

    Args:
        num_classes: number of classes of the stream.
        ridge: added to the diagonal of every covariance (keeps it positive definite
            when a class has fewer examples than dimensions).
    """

    def __init__(self, num_classes: int, ridge: float = 1e-4):
        if not ridge >= 0:
            raise ConfigError(f"ridge must be >= 0, got {ridge}")
        self.num_classes = int(num_classes)
        self.ridge = float(ridge)
        self.means: torch.Tensor | None = None  # (C, d) float64
        self.covs: torch.Tensor | None = None  # (C, d, d) float32 (storage)
        self.known = torch.zeros(self.num_classes, dtype=torch.bool)
        self._chol: torch.Tensor | None = None  # cached Cholesky factors of the known classes

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Set mean and covariance of every class present in ``labels`` from ``features``."""
        _check_labels(labels, features, self.num_classes)
        f = features.detach().to(torch.float64)
        d = f.shape[1]
        if self.means is None:
            self.means = torch.zeros(self.num_classes, d, dtype=torch.float64)
            self.covs = torch.zeros(self.num_classes, d, d, dtype=torch.float32)
        eye = torch.eye(d, dtype=torch.float64)
        for c in labels.unique().tolist():
            fc = f[labels == c]
            mean = fc.mean(0)
            centred = fc - mean
            cov = centred.T @ centred / max(len(fc) - 1, 1)  # torch.cov convention (n - 1)
            self.means[c] = mean
            self.covs[c] = (cov + self.ridge * eye).float()
            self.known[c] = True
        self._chol = None

    def classes(self) -> torch.Tensor:
        """Ids of the classes with statistics, ascending."""
        return torch.nonzero(self.known).flatten()

    def sample(
        self, per_class: int, generator: torch.Generator, mean_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` samples from N(scale_c * mean_c, cov_c) for every known class c.

        ``mean_scale`` is an optional (C,) tensor of per-class factors on the mean.
        Returns float32 features (k * per_class, d) and int64 labels, grouped by class.
        """
        ids = self.classes()
        if len(ids) == 0:
            raise DataError("no class statistics yet; call update() after an experience")
        if self._chol is None or self._chol.shape[0] != len(ids):
            covs = self.covs[ids].to(torch.float64)  # factorise in float64, sample in float32
            chol, info = torch.linalg.cholesky_ex(covs)
            if int(info.max()) > 0:  # not positive definite: add a larger ridge to those classes
                eye = torch.eye(covs.shape[-1], dtype=torch.float64)
                chol = torch.linalg.cholesky(covs + 1e-3 * covs.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * eye)
            self._chol = chol.float()
        means = self.means[ids]
        if mean_scale is not None:
            means = means * mean_scale[ids].to(torch.float64).unsqueeze(1)
        eps = torch.randn(len(ids), per_class, means.shape[1], generator=generator)
        x = torch.baddbmm(means.float().unsqueeze(1), eps, self._chol.transpose(1, 2))  # (k, per_class, d)
        labels = ids.repeat_interleave(per_class)
        return x.reshape(-1, means.shape[1]), labels

    def state(self) -> dict:
        """Tensors for a checkpoint (empty tensors before the first update)."""
        return {
            "means": self.means if self.means is not None else torch.zeros(0),
            "covs": self.covs if self.covs is not None else torch.zeros(0),
            "known": self.known,
        }

    def load(self, state: dict) -> None:
        """Restore :meth:`state`; raises :class:`CheckpointError` on a mismatch."""
        try:
            means, covs, known = state["means"], state["covs"], state["known"].to(torch.bool)
        except (KeyError, AttributeError) as e:
            raise CheckpointError(f"class-Gaussian state is missing or malformed: {e}") from e
        if known.shape != (self.num_classes,) or (means.numel() and means.shape[0] != self.num_classes):
            raise CheckpointError(f"class-Gaussian state is for another number of classes than {self.num_classes}")
        self.means = means.to(torch.float64).clone() if means.numel() else None
        self.covs = covs.to(torch.float32).clone() if covs.numel() else None
        self.known = known.clone()
        self._chol = None


def encode_in_batches(
    encoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """``encoder`` applied to ``x`` in batches of ``batch_size`` rows, concatenated (no gradients).

    The frozen-feature step of every prototype classifier: a pre-trained model's
    embeddings are computed once per input, batched, without autograd.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    with torch.no_grad():  # not inference_mode: trainable modules may consume the result
        parts = [encoder(x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
    if not parts:
        raise DataError("no inputs to encode; give at least one example")
    f = torch.cat(parts)
    if f.ndim != 2:
        raise DataError(f"the encoder must return (batch, features), got shape {tuple(f.shape)}")
    return f
