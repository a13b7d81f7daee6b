"""LoRA: low-rank updates injected into stock ``torch.nn.Linear`` modules, split as HF PEFT's ``tuners/lora``.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022 (arXiv:2106.09685).
- ``config``: :class:`LoRAConfig`, the adapter-kind and initialiser registries.
- ``layer``: :class:`LoRALinear` (the layer; variants subclass it), the built-in inits, :class:`SeededDropout`.
- ``model``: injection by module-name patterns, activation, merge/unmerge, fold, unload, parameter accounting.
Everything is re-exported here, so ``from lifelong.adapters.lora import X`` keeps working.
"""

from lifelong.adapters.lora.config import (
    ADAPTER_KINDS,
    ALL_LINEAR,
    LORA_INITS,
    InitFn,
    LoRAConfig,
    register_adapter_kind,
    register_lora_init,
)
from lifelong.adapters.lora.layer import LoRALinear, SeededDropout
from lifelong.adapters.lora.model import (
    ParameterCount,
    active_adapters,
    adapter_names,
    adapter_parameters,
    adapters_disabled,
    check_finite,
    count_parameters,
    delete_adapter,
    find_targets,
    fold_adapter,
    inject_adapter,
    lora_layers,
    merge_adapters,
    set_active_adapters,
    unload,
    unmerge_adapters,
    wrap_targets,
)
from lifelong.errors import AdapterError

__all__ = [
    "LoRAConfig",
    "LoRALinear",
    "SeededDropout",
    "AdapterError",
    "ParameterCount",
    "ALL_LINEAR",
    "ADAPTER_KINDS",
    "LORA_INITS",
    "register_lora_init",
    "register_adapter_kind",
    "find_targets",
    "inject_adapter",
    "wrap_targets",
    "lora_layers",
    "adapter_names",
    "adapter_parameters",
    "set_active_adapters",
    "active_adapters",
    "adapters_disabled",
    "merge_adapters",
    "unmerge_adapters",
    "fold_adapter",
    "delete_adapter",
    "unload",
    "check_finite",
    "count_parameters",
    "InitFn",
]
