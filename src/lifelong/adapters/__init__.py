"""Parameter-efficient adapters injected into stock ``torch.nn.Linear`` modules (DESIGN §2).

:mod:`~lifelong.adapters.lora` (the LoRA layer, injection by name patterns, exact merge/unmerge),
:mod:`~lifelong.adapters.io` (HF PEFT's file format), :mod:`~lifelong.adapters.allora` (ALLoRA, arXiv 2410.09692),
:mod:`~lifelong.adapters.codyra` (CoDyRA, arXiv 2412.01004) and, imported on demand,
:mod:`~lifelong.adapters.lora_limits` (arXiv 2406.03136). Example::

    inject_adapter(model, LoRAConfig(r=8, alpha=16, target_modules=["query", "value"]), "task0", seed=0)
    ...  # train
    save_adapter(model, "out/task0", "task0")   # loadable by peft.PeftModel.from_pretrained
"""

from lifelong.adapters.allora import ALLoRAConfig, ALLoRALinear, allora_row_scale
from lifelong.adapters.codyra import CoDyRAConfig, CoDyRALinear, effective_ranks, merge_and_reset, proximal_step
from lifelong.adapters.io import load_adapter, read_adapter, save_adapter
from lifelong.adapters.lora import (
    ADAPTER_KINDS,
    ALL_LINEAR,
    LORA_INITS,
    AdapterError,
    LoRAConfig,
    LoRALinear,
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
    register_adapter_kind,
    register_lora_init,
    set_active_adapters,
    unload,
    unmerge_adapters,
    wrap_targets,
)

__all__ = [
    "LoRAConfig",
    "LoRALinear",
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
    "save_adapter",
    "load_adapter",
    "read_adapter",
    "ALLoRAConfig",
    "ALLoRALinear",
    "allora_row_scale",
    "CoDyRAConfig",
    "CoDyRALinear",
    "effective_ranks",
    "merge_and_reset",
    "proximal_step",
]
