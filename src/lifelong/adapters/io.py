"""Save and load adapters in HF PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

The files are what ``peft.PeftModel.save_pretrained`` writes for a LoRA adapter (tensors
``base_model.model.<module>.lora_A.weight`` (r x in) and ``...lora_B.weight`` (out x r); ``target_modules``
the explicit list of adapted modules), so each side loads the other's. Variants save as the plain LoRA that
computes the same function (gates folded into ``B``, ALLoRA as ``lora_alpha = r``); what only lifelong needs
goes into the safetensors header metadata under ``"lifelong"``, which PEFT ignores. Loading checks everything
before changing the model: files, config, module names and shapes (an adapter saved for another base model
fails naming the module and shapes), rank, and finite weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from lifelong.adapters.lora import (
    ALL_LINEAR,
    LoRAConfig,
    LoRALinear,
    adapter_parameters,
    check_finite,
    find_targets,
    inject_adapter,
    lora_layers,
)
from lifelong.errors import CheckpointError, ConfigError
from lifelong.fileio import atomic_write_bytes

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."
#: PEFT LoraConfig features lifelong does not run; loading a file that uses one stops with this message.
_UNSUPPORTED = {
    "use_dora": (False, "DoRA"),
    "fan_in_fan_out": (False, "fan_in_fan_out (Conv1D layers)"),
    "bias": ("none", "trained biases"),
    "lora_bias": (False, "a bias on lora_B"),
    "modules_to_save": (None, "modules_to_save (fully trained extra modules)"),
    "layers_to_transform": (None, "layers_to_transform"),
    "rank_pattern": ({}, "per-module ranks (rank_pattern)"),
    "alpha_pattern": ({}, "per-module alphas (alpha_pattern)"),
    "target_parameters": (None, "target_parameters"),
    "layer_replication": (None, "layer_replication"),
    "trainable_token_indices": (None, "trainable tokens"),
    "use_qalora": (False, "QALoRA"),
    "alora_invocation_tokens": (None, "aLoRA invocation tokens"),
}
_INIT_TO_PEFT = {"kaiming": True, "gaussian": "gaussian", "random": False}
_INIT_FROM_PEFT = {True: "kaiming", "gaussian": "gaussian", False: "random"}


def peft_config_dict(config: LoRAConfig, modules: list[str], base_model_name_or_path: str | None = None) -> dict:
    """The ``adapter_config.json`` content PEFT reads for ``config`` applied to ``modules``."""
    return {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "inference_mode": True,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "use_rslora": config.use_rslora,
        "target_modules": sorted(modules),
        "exclude_modules": None,
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "init_lora_weights": _INIT_TO_PEFT.get(config.init, True),
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_dora": False,
    }


def save_adapter(
    model: nn.Module,
    directory: str | os.PathLike,
    adapter_name: str = "default",
    *,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write adapter ``adapter_name`` of ``model`` to ``directory`` in HF PEFT's LoRA format.

    Refuses (``AdapterError``) an adapter holding NaN/inf. Files are written atomically
    (weights first, config last). Returns the folder.
    """
    from safetensors.torch import save as st_save

    layers = {n: m for n, m in lora_layers(model).items() if adapter_name in m.lora_config}
    adapter_parameters(model, adapter_name)  # raises for an unknown name, listing the known ones
    check_finite(model, adapter_name)
    configs = {json.dumps(m.lora_config[adapter_name].to_dict(), sort_keys=True) for m in layers.values()}
    if len(configs) != 1:
        raise ConfigError(
            f"adapter {adapter_name!r} has different settings in different layers; PEFT's format "
            "holds one config per adapter. Save the layers as separate adapters"
        )
    config = next(iter(layers.values())).lora_config[adapter_name]
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, layer in layers.items():
        a, b = layer.factors(adapter_name)
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.detach().cpu().contiguous().clone()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.detach().cpu().contiguous().clone()
        shapes[name] = [layer.out_features, layer.in_features]
    meta = {"format": "pt", "lifelong": json.dumps({"config": config.to_dict(), "shapes": shapes}, sort_keys=True)}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS_NAME, st_save(tensors, metadata=meta))
    cfg = peft_config_dict(config, list(layers), base_model_name_or_path)
    atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode())
    return directory


def read_adapter(directory: str | os.PathLike) -> tuple[LoRAConfig, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Read a PEFT LoRA folder: the config (a :class:`LoRAConfig` or variant) and ``{module: (A, B)}``.

    Raises :class:`CheckpointError` for missing or corrupt files, unsupported PEFT
    features, malformed tensor names, inconsistent shapes and NaN/inf weights.
    """
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{directory} has no {CONFIG_NAME}; point at a folder written by save_adapter() or peft's save_pretrained()"
        )
    if not w_path.is_file():
        hint = (
            (
                " (it has adapter_model.bin, a pickle lifelong does not open: re-save it with safetensors, "
                "e.g. save_pretrained(..., safe_serialization=True))"
            )
            if (directory / "adapter_model.bin").exists()
            else ""
        )
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}{hint}")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
    if not isinstance(raw, dict) or raw.get("peft_type") != "LORA":
        raise CheckpointError(
            f"{cfg_path} describes a {raw.get('peft_type') if isinstance(raw, dict) else raw!r} "
            "adapter; lifelong loads LoRA adapters (peft_type 'LORA') only"
        )
    for key, (neutral, what) in _UNSUPPORTED.items():
        value = raw.get(key, neutral)
        if value is None or value == neutral or (neutral == {} and not value):
            continue
        raise CheckpointError(
            f"{cfg_path} uses {what} ({key}={value!r}), which lifelong does not run; save the adapter without it"
        )
    try:
        with safe_open(str(w_path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{w_path} is not a readable safetensors file: {e}") from e
    extra = {}
    if "lifelong" in meta:
        try:
            extra = json.loads(meta["lifelong"])
        except ValueError as e:
            raise CheckpointError(f"{w_path}: corrupt lifelong metadata: {e}") from e
    try:
        init = raw.get("init_lora_weights", True)
        peft_fields = {
            "r": int(raw["r"]),
            "alpha": float(raw.get("lora_alpha", 8)),
            "dropout": float(raw.get("lora_dropout", 0.0)),
            "target_modules": raw.get("target_modules") or ALL_LINEAR,
            "exclude_modules": list(raw.get("exclude_modules") or []),
            "use_rslora": bool(raw.get("use_rslora", False)),
            "init": _INIT_FROM_PEFT.get(init, "kaiming") if isinstance(init, (bool, str)) else "kaiming",
        }
        # PEFT's fields are what PEFT computes with; the metadata adds the variant's kind and extra settings
        config = LoRAConfig.from_dict({**extra.get("config", {}), **peft_fields})
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path} is not a usable LoRA config: {e}") from e
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        body = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if body.endswith(suffix):
                pairs.setdefault(body[: -len(suffix)], {})[part] = t
                break
        else:
            raise CheckpointError(
                f"{w_path} holds tensor {key!r}, which is not a LoRA A/B weight of a Linear "
                "layer; lifelong loads Linear-layer LoRA adapters only"
            )
    if not pairs:
        raise CheckpointError(f"{w_path} holds no LoRA weights")
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            raise CheckpointError(
                f"{w_path}: module {module!r} has only {sorted(ab)}; both lora_A and lora_B are needed"
            )
        a, b = ab["lora_A"], ab["lora_B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != config.r or b.shape[1] != config.r:
            raise CheckpointError(
                f"{w_path}: module {module!r} has lora_A {tuple(a.shape)} and lora_B "
                f"{tuple(b.shape)}, which do not fit rank r={config.r} from {CONFIG_NAME}"
            )
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise CheckpointError(
                f"{w_path}: the adapter weights of module {module!r} hold NaN or inf; the "
                "adapter is corrupt or its training diverged"
            )
        out[module] = (a, b)
    return config, out


def load_adapter(
    model: nn.Module,
    directory: str | os.PathLike,
    adapter_name: str = "default",
    *,
    is_trainable: bool = False,
    activate: bool = True,
) -> list[str]:
    """Load a PEFT-format LoRA adapter from ``directory`` into ``model`` as ``adapter_name``.

    Every module named in the file must exist in ``model`` as an ``nn.Linear`` of the
    saved shape, and the config's ``target_modules`` must select exactly those modules;
    otherwise :class:`CheckpointError` says which module differs and how, and the model
    is left unchanged. With ``is_trainable`` the adapter's parameters require grad
    (other parameters are not touched); else they are frozen. Returns the module names.
    """
    config, weights = read_adapter(directory)
    linear = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, LoRALinear))}
    missing = [m for m in weights if m not in linear]
    if missing:
        close = sorted(linear)[:6]
        raise CheckpointError(
            f"the adapter in {directory} was saved for another base model: module(s) "
            f"{missing[:5]} are not Linear modules of this {type(model).__name__} (it has e.g. "
            f"{close}); load it into the model it was trained on"
        )
    for name, (a, b) in weights.items():
        m = linear[name]
        if (m.out_features, m.in_features) != (b.shape[0], a.shape[1]):
            raise CheckpointError(
                f"the adapter in {directory} was saved for another base model: module {name!r} "
                f"is {m.in_features} -> {m.out_features} here but the adapter expects "
                f"{a.shape[1]} -> {b.shape[0]}"
            )
    try:
        targets = find_targets(model, config.target_modules, config.exclude_modules)
    except ConfigError as e:
        raise CheckpointError(f"the adapter in {directory} does not fit this model: {e}") from e
    if sorted(targets) != sorted(weights):
        extra = sorted(set(targets) - set(weights))[:5]
        lack = sorted(set(weights) - set(targets))[:5]
        raise CheckpointError(
            f"the adapter config in {directory} selects modules {extra} that have no weights in "
            f"the file, or the file has weights for {lack} that the config does not select; "
            "the files do not belong together or were saved for another base model"
        )
    for name in weights:
        m = linear[name]
        if isinstance(m, LoRALinear) and adapter_name in m.lora_config:
            raise CheckpointError(
                f"module {name!r} already has an adapter named {adapter_name!r}; load under "
                "another adapter_name or delete the old adapter first"
            )
    pinned = LoRAConfig.from_dict({**config.to_dict(), "target_modules": sorted(weights), "exclude_modules": []})
    before = {id(p): p.requires_grad for p in model.parameters()}
    names = inject_adapter(model, pinned, adapter_name, freeze_base=False, activate=activate)
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            if name in weights:
                a, b = weights[name]
                layer.lora_A[adapter_name].weight.copy_(a)
                layer.lora_B[adapter_name].weight.copy_(b)
    for p in model.parameters():
        if id(p) in before:
            p.requires_grad_(before[id(p)])
    for p in adapter_parameters(model, adapter_name):
        p.requires_grad_(is_trainable)
    return names


__all__ = ["save_adapter", "load_adapter", "read_adapter", "peft_config_dict", "CONFIG_NAME", "WEIGHTS_NAME"]
