"""Discrete Key-Value Bottleneck (DKVB): frozen keys, locally trained values, a non-parametric decoder.

Discrete Key-Value Bottleneck (arXiv 2207.11240). A frozen encoder's output is split into ``C`` heads by fixed
random projections; each head is snapped to its nearest keys in its own codebook and the paired values (one
entry per class) are averaged into the logits. Keys are initialised on unlabelled inputs by EMA k-means and
then frozen; only the values are trained, and a value row gets gradient only when its key is fetched, which
is what limits forgetting.

Notes: docs/papers/dkvb.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError, NonFiniteLossError
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class DKVBConfig(GradientConfig):
    """DKVB settings. Defaults follow the authors' experiment configs (SGD, lr 0.3, clip 1.0,
    batch 256, label smoothing 0.1, zero-initialised values, EMA decay 0.95, threshold factor 0.1,
    10 key-init epochs) with CPU-sized codebooks (the paper sweeps up to 256 x 4096 pairs)."""

    epochs: int = hp(10, "passes over each experience's training data (values only)")
    batch_size: int = hp(256, "mini-batch size")
    lr: float = hp(0.3, "learning rate of the values (paper configs: 0.3 with SGD)")
    optimizer: str = hp("sgd", "optimizer; keep plain 'sgd' (momentum 0) for strictly local value updates")
    momentum: float = hp(0.0, "SGD momentum; > 0 keeps moving rows fetched in earlier steps")
    num_codebooks: int = hp(64, "C: number of heads / codebooks")
    pairs_per_codebook: int = hp(256, "M: key-value pairs per codebook")
    dim_keys: int = hp(8, "dimension of each head (random projection of the features)")
    topk: int = hp(1, "keys fetched per head (values averaged)")
    key_init: str = hp("ema", "key initialisation on unlabelled data: 'ema' (EMA k-means, the paper's) | 'kmeans'")
    init_epochs: int = hp(10, "passes over the unlabelled data to initialise the keys")
    decay: float = hp(0.95, "EMA decay of the key updates during initialisation")
    eps: float = hp(1e-5, "Laplace smoothing of the EMA cluster sizes")
    threshold_factor: float = hp(0.1, "dead-key threshold = factor * batch_size / M (EMA cluster size)")
    grad_clip: float = hp(1.0, "clip the values' gradient norm to this (0 = off)")
    label_smoothing: float = hp(0.1, "label smoothing of the cross-entropy")
    chunk: int = hp(512, "examples per chunk when looking up keys (memory bound)")
    hidden: tuple[int, ...] = hp((), "unused (DKVB has no MLP backbone); kept for the shared config")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.key_init not in ("ema", "kmeans"):
            raise ConfigError(f"key_init must be 'ema' or 'kmeans', got {self.key_init!r}")
        for name in ("num_codebooks", "pairs_per_codebook", "dim_keys", "topk", "init_epochs", "chunk"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.topk > self.pairs_per_codebook:
            raise ConfigError(f"topk ({self.topk}) cannot exceed pairs_per_codebook ({self.pairs_per_codebook})")
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"decay must lie in [0, 1), got {self.decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")


class KeyValueBottleneck(nn.Module):
    """Random-projection heads, frozen keys, learnable values, mean-of-values decoder (DKVB, §3).

    Buffers: ``projection`` (C, D, d_key), ``keys`` (C, M, d_key), ``initialised``.
    Parameter: ``values`` (C, M, num_classes), zero-initialised as in the paper's configs.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        num_codebooks: int,
        pairs: int,
        dim_keys: int,
        topk: int = 1,
        chunk: int = 512,
    ):
        super().__init__()
        self.topk, self.chunk = topk, chunk
        self.register_buffer("projection", torch.randn(num_codebooks, in_dim, dim_keys) / math.sqrt(in_dim))
        self.register_buffer("keys", torch.zeros(num_codebooks, pairs, dim_keys))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.values = nn.Parameter(torch.zeros(num_codebooks, pairs, num_classes))

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, d_key) projections of the flattened inputs."""
        return torch.einsum("bd,cdk->bck", x.reshape(len(x), -1), self.projection)

    @torch.no_grad()
    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """Indices (B, C, topk) of the nearest keys of each head."""
        out = []
        key_sq = self.keys.pow(2).sum(-1).unsqueeze(1)  # (C, 1, M)
        for s in range(0, len(x), self.chunk):
            h = self.heads(x[s : s + self.chunk]).transpose(0, 1)  # (C, b, k)
            # squared distance up to the per-query constant ||h||^2: ||k||^2 - 2 h.k
            d = torch.baddbmm(key_sq, h, self.keys.transpose(1, 2), alpha=-2.0)  # (C, b, M)
            if self.topk == 1:
                out.append(d.argmin(-1).T.unsqueeze(-1))
            else:
                out.append(d.topk(self.topk, dim=-1, largest=False).indices.permute(1, 0, 2))
        return torch.cat(out)

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits = mean over heads and top-k of the fetched values (non-parametric decoder)."""
        C, M, V = self.values.shape
        flat = (idx + (torch.arange(C) * M).view(1, C, 1)).reshape(len(idx), -1)  # (B, C * topk)
        return F.embedding_bag(flat, self.values.view(C * M, V), mode="mean")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialised):  # nothing learned yet: uniform scores
            return torch.zeros(len(x), self.values.shape[-1])
        return self.decode(self.lookup(x))


def _assign(h: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Nearest key per head: h (C, n, k), keys (C, M, k) -> (C, n)."""
    key_sq = keys.pow(2).sum(-1).unsqueeze(1)
    return torch.baddbmm(key_sq, h, keys.transpose(1, 2), alpha=-2.0).argmin(-1)


@torch.no_grad()
def init_keys_ema(
    bottleneck: KeyValueBottleneck,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    decay: float,
    eps: float,
    threshold_factor: float,
    generator: torch.Generator,
) -> None:
    """EMA k-means of each head's projections (the paper's key initialisation), then mark keys initialised.

    Per batch: assign to the nearest key, EMA the cluster sizes and sums, keys = sums /
    Laplace-smoothed sizes; keys whose EMA size is below ``threshold_factor * batch / M``
    are re-seeded with random heads of the batch.
    """
    C, M, _ = bottleneck.keys.shape
    n = len(x)
    h_all = bottleneck.heads(x).transpose(0, 1).contiguous()  # (C, n, k)
    start = torch.randint(0, n, (C, M), generator=generator)
    keys = torch.gather(h_all, 1, start.unsqueeze(-1).expand(-1, -1, h_all.shape[-1])).clone()
    size = torch.ones(C, M)
    sums = keys.clone()
    threshold = threshold_factor * min(batch_size, n) / M
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for s in range(0, n, batch_size):
            h = h_all[:, order[s : s + batch_size]]  # (C, b, k)
            a = _assign(h, keys)  # (C, b)
            onehot = F.one_hot(a, M).to(h.dtype)  # (C, b, M)
            size.mul_(decay).add_(onehot.sum(1), alpha=1 - decay)
            sums.mul_(decay).add_(torch.einsum("cbm,cbk->cmk", onehot, h), alpha=1 - decay)
            total = size.sum(-1, keepdim=True)
            smoothed = (size + eps) / (total + M * eps) * total
            keys = sums / smoothed.unsqueeze(-1)
            dead = size < threshold
            if dead.any():
                pick = torch.randint(0, h.shape[1], (C, M), generator=generator)
                fresh = torch.gather(h, 1, pick.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
                keys = torch.where(dead.unsqueeze(-1), fresh, keys)
                sums = torch.where(dead.unsqueeze(-1), fresh * size.clamp(min=eps).unsqueeze(-1), sums)
    bottleneck.keys.copy_(keys)
    bottleneck.initialised.fill_(True)


@torch.no_grad()
def init_keys_kmeans(
    bottleneck: KeyValueBottleneck, x: torch.Tensor, *, epochs: int, generator: torch.Generator
) -> None:
    """Batch Lloyd k-means of each head's projections (``epochs`` iterations); empty clusters keep their key."""
    C, M, _ = bottleneck.keys.shape
    h = bottleneck.heads(x).transpose(0, 1).contiguous()
    start = torch.stack(
        [
            torch.randperm(len(x), generator=generator)[:M]
            if len(x) >= M
            else torch.randint(0, len(x), (M,), generator=generator)
            for _ in range(C)
        ]
    )
    keys = torch.gather(h, 1, start.unsqueeze(-1).expand(-1, -1, h.shape[-1])).clone()
    for _ in range(epochs):
        onehot = F.one_hot(_assign(h, keys), M).to(h.dtype)
        count = onehot.sum(1)
        sums = torch.einsum("cnm,cnk->cmk", onehot, h)
        keys = torch.where(count.unsqueeze(-1) > 0, sums / count.clamp(min=1).unsqueeze(-1), keys)
    bottleneck.keys.copy_(keys)
    bottleneck.initialised.fill_(True)


@register("dkvb")
class DKVB(GradientLearner):
    """Discrete key-value bottleneck over frozen features, trained on class-incremental streams.

    ``learn`` initialises (once, on the first experience's unlabelled training inputs)
    and freezes the keys, then trains only the values. ``bottleneck`` is the
    :class:`KeyValueBottleneck` module (``self.model``).
    """

    config_class = DKVBConfig

    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        c = self.config
        return KeyValueBottleneck(
            int(math.prod(input_shape)), num_classes, c.num_codebooks, c.pairs_per_codebook, c.dim_keys, c.topk, c.chunk
        )

    @property
    def bottleneck(self) -> KeyValueBottleneck:
        """The model: the key-value bottleneck with its decoder."""
        return self.model

    def before_experience(self, experience: Experience) -> None:
        """Initialise the keys on this experience's inputs if :meth:`init_keys` was not called (labels unused)."""
        if bool(self.model.initialised):
            return
        self.init_keys(experience.train_tensors()[0])

    def init_keys(self, x: torch.Tensor) -> None:
        """Fit the keys on the unlabelled inputs ``x`` (the paper's separate unlabelled data), then freeze them.

        Call after :meth:`prepare`; keys already initialised raise :class:`ConfigError`
        (they are frozen once fitted).
        """
        if self.model is None:
            raise ConfigError("dkvb: call prepare(input_shape, num_classes) before init_keys")
        if bool(self.model.initialised):
            raise ConfigError("dkvb: the keys are already initialised and frozen")
        x = x.reshape(len(x), -1).float()
        if len(x) == 0 or x.shape[1] != self.model.projection.shape[1]:
            raise ConfigError(
                f"dkvb: init_keys needs a non-empty (n, {self.model.projection.shape[1]}) input, got {tuple(x.shape)}"
            )
        c = self.config
        if c.key_init == "ema":
            init_keys_ema(
                self.model,
                x,
                epochs=c.init_epochs,
                batch_size=c.batch_size,
                decay=c.decay,
                eps=c.eps,
                threshold_factor=c.threshold_factor,
                generator=self.generator,
            )
        else:
            init_keys_kmeans(self.model, x, epochs=c.init_epochs, generator=self.generator)

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Look the keys up once (keys and encoder are frozen, so each example's pairs never change),
        then run the epochs of value updates on the cached indices."""
        idx_all = self.model.lookup(x)
        online = experience.online
        epochs = 1 if online else self.config.epochs
        bs = experience.batch_size if online and experience.batch_size else self.config.batch_size
        n = len(y)
        for _ in range(epochs):
            order = torch.arange(n) if online else torch.randperm(n, generator=self.generator)
            for start in range(0, n, bs):
                b = order[start : start + bs]
                self._value_step(idx_all[b], y[b], experience)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        """Label-smoothed cross-entropy over the classes seen so far."""
        return self._loss_from_indices(self.model.lookup(x), y)

    def _loss_from_indices(self, idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.model.decode(idx)[:, self.classes.seen]
        seen_ids = torch.nonzero(self.classes.seen).flatten()
        target = torch.searchsorted(seen_ids, y)
        return F.cross_entropy(logits, target, label_smoothing=self.config.label_smoothing)

    def _value_step(self, idx: torch.Tensor, y: torch.Tensor, experience: Experience) -> float:
        """One SGD step on the values fetched by ``idx`` with the gradient clipped to ``grad_clip``."""
        loss = self._loss_from_indices(idx, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"dkvb: the loss became {loss.item()} during experience {experience.index}; "
                "lower method.lr or check the inputs for NaN/inf"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([self.model.values], self.config.grad_clip)
        self.optimizer.step()
        self.samples_seen += len(y)
        return float(loss.detach())

    @torch.no_grad()
    def fetched(self, x: torch.Tensor) -> torch.Tensor:
        """Bool mask (C, M) of the key-value pairs that inputs ``x`` fetch."""
        idx = self.model.lookup(x)
        mask = torch.zeros(self.model.values.shape[:2], dtype=torch.bool)
        C = mask.shape[0]
        mask[torch.arange(C).view(1, C, 1).expand_as(idx), idx] = True
        return mask
