"""What a dataset's inputs are: pixels, unit-norm sentence embeddings, token ids or plain vectors.

A method's defaults may depend on it (an MLP suits pixels in [0, 1]; a linear head with a larger step suits
unit-norm embeddings), so the kind is known before the data is loaded: :func:`loader_kind` answers from the
loader's name and options, :func:`dataset_kind` from a loaded :class:`~lifelong.data.Dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lifelong.errors import ConfigError

#: data kind -> what it is, in words
DATA_KINDS = {
    "pixels": "images scaled to [0, 1]",
    "embeddings": "unit-norm sentence embeddings of a pre-trained text encoder",
    "tokens": "token ids of a pre-trained text encoder",
    "vectors": "feature vectors of no particular kind",
}


def _text_kind(kwargs: Mapping[str, Any]) -> str:
    return "tokens" if kwargs.get("representation", "features") == "tokens" else "embeddings"


#: loader name -> its data kind, or a function of the loader's options giving it
LOADER_KINDS: dict[str, str | Callable[[Mapping[str, Any]], str]] = {
    "digits": "pixels",
    "mnist": "pixels",
    "blobs": "vectors",
    "clinc150": _text_kind,
    "text-file": _text_kind,
}


def check_kind(kind: str) -> str:
    """``kind`` when it is one of :data:`DATA_KINDS`, else a :class:`ConfigError` listing them."""
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind {kind!r}; use one of {', '.join(DATA_KINDS)}")
    return kind


def loader_kind(name: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """The data kind the loader registered as ``name`` gives with options ``kwargs`` (``vectors`` if unknown)."""
    kind = LOADER_KINDS.get(name, "vectors")
    return check_kind(kind(dict(kwargs or {})) if callable(kind) else kind)


def dataset_kind(dataset: Any) -> str:
    """The data kind of a loaded dataset: its ``meta["kind"]`` when set, else judged from its inputs."""
    meta = getattr(dataset, "meta", None) or {}
    if "kind" in meta:
        return check_kind(str(meta["kind"]))
    if meta.get("inputs") == "token ids":
        return "tokens"
    if meta.get("encoder") is not None:
        return "embeddings"
    shape = tuple(getattr(dataset, "input_shape", ()))
    return "pixels" if len(shape) == 3 else "vectors"
