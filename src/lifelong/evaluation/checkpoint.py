"""Checkpoints as safetensors + JSON, never pickles.

A learner's ``state_dict()`` is a nested structure of dicts, lists, tensors and
JSON values. :func:`flatten_state` moves every tensor into a flat
``{key: tensor}`` dict (saved with safetensors) and leaves a JSON skeleton with
``{"__tensor__": key}`` placeholders. The JSON file records the SHA-256 of the
tensor file and is written last, so a crash or a corrupted file is detected on
load and reported instead of half-loading a model.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lifelong.errors import CheckpointError
from lifelong.evaluation.io import atomic_write_bytes, atomic_write_json

FORMAT = 1
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_INTKEYS = "__intkeys__"
_FLOAT = "__float__"  # NaN / infinities, which strict JSON cannot hold


def flatten_state(obj: Any, prefix: str = "s") -> tuple[dict[str, torch.Tensor], object]:
    """Split ``obj`` into ``(tensors, skeleton)``; raises ``TypeError`` on unsupported values."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(o: Any, key: str) -> Any:
        if isinstance(o, torch.Tensor):
            tensors[key] = o.detach().cpu().contiguous().clone()
            return {_TENSOR: key}
        if isinstance(o, dict):
            if all(isinstance(k, int) for k in o) and o:
                return {_INTKEYS: {str(k): walk(v, f"{key}.{k}") for k, v in o.items()}}
            if not all(isinstance(k, str) for k in o):
                raise TypeError(f"checkpoint dict keys must be str or int at {key}")
            return {k: walk(v, f"{key}.{k}") for k, v in o.items()}
        if isinstance(o, tuple):
            return {_TUPLE: [walk(v, f"{key}.{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(o)]
        if isinstance(o, float) and not math.isfinite(o):
            return {_FLOAT: repr(o)}  # 'nan', 'inf', '-inf'
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store a {type(o).__name__} in a checkpoint (at {key}); use tensors and JSON values")

    return tensors, walk(obj, prefix)


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""

    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            if set(o) == {_TENSOR}:
                if o[_TENSOR] not in tensors:
                    raise CheckpointError(f"checkpoint is missing tensor {o[_TENSOR]!r}")
                return tensors[o[_TENSOR]]
            if set(o) == {_TUPLE}:
                return tuple(walk(v) for v in o[_TUPLE])
            if set(o) == {_INTKEYS}:
                return {int(k): walk(v) for k, v in o[_INTKEYS].items()}
            if set(o) == {_FLOAT}:
                return float(o[_FLOAT])
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(skeleton)


def save_checkpoint(directory: str | Path, state: dict, meta: dict) -> None:
    """Write ``state`` (nested tensors/JSON) and ``meta`` (JSON) to ``directory/state.*``."""
    directory = Path(directory)
    tensors, skeleton = flatten_state(state)
    blob = st_save(tensors) if tensors else st_save({"_empty": torch.zeros(0)})
    atomic_write_bytes(directory / "state.safetensors", blob)
    atomic_write_json(
        directory / "state.json",
        {"format": FORMAT, "sha256": hashlib.sha256(blob).hexdigest(), "meta": meta, "state": skeleton},
    )


def load_checkpoint(directory: str | Path) -> tuple[dict, dict]:
    """Read ``(state, meta)`` back; any inconsistency raises :class:`CheckpointError`."""
    directory = Path(directory)
    js, st = directory / "state.json", directory / "state.safetensors"
    if not js.exists() or not st.exists():
        raise CheckpointError(f"no checkpoint in {directory} (expected state.json and state.safetensors)")
    try:
        doc = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{js} is not valid JSON ({e}); delete the checkpoint folder to start over") from e
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{js} has checkpoint format {doc.get('format')!r}; this version reads {FORMAT}")
    blob = st.read_bytes()
    if hashlib.sha256(blob).hexdigest() != doc.get("sha256"):
        raise CheckpointError(
            f"{st} does not match the hash recorded in {js}: the checkpoint is corrupt "
            "or half-written; delete the checkpoint folder to start over"
        )
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{st} cannot be read: {e}") from e
    return unflatten_state(doc["state"], tensors), doc.get("meta", {})
