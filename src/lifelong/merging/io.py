"""State dicts on disk: safetensors only (never a pickle), written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from lifelong.errors import ConfigError, DataError
from lifelong.fileio import atomic_write_bytes

#: Suffixes of pickle-based checkpoints, refused with a hint to convert them.
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``.

    Raises:
        ConfigError: the path is missing, a folder, or a pickle checkpoint (``.bin``, ``.pt``, ...).
        DataError: the file is not a readable safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise ConfigError(
            f"{p} is a pickle checkpoint, which lifelong never loads (unpickling runs code); save the state dict "
            f"with safetensors.torch.save_file(model.state_dict(), 'model.safetensors') and pass that file"
        )
    if p.is_dir():
        raise ConfigError(f"{p} is a folder; pass its .safetensors file (e.g. {p / 'model.safetensors'})")
    if not p.is_file():
        raise ConfigError(f"no file {p}; check the path")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{p} is not a readable safetensors file ({e}); pass a .safetensors state dict") from None


def save_state_dict(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, object] | None = None
) -> Path:
    """Write ``tensors`` to the safetensors file ``path`` atomically; ``metadata`` values are stored as JSON text."""
    from safetensors.torch import save

    meta = {str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    data = save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata=meta)
    return atomic_write_bytes(path, data)


__all__ = ["PICKLE_SUFFIXES", "load_state_dict", "save_state_dict"]
