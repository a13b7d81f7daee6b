"""Model merging: task vectors over state dicts and merge methods as pure, registered functions.

Example::

    from lifelong.merging import merge
    merged = merge(base_sd, [expert_a_sd, expert_b_sd], "breadcrumbs", density=0.15, gamma=0.006, alpha=0.3)

Methods: task arithmetic, TIES, DARE (linear and TIES), Model Breadcrumbs (and Breadcrumbs + TIES);
Sparse fine-tuning (LT-SFT, :mod:`lifelong.merging.sparse_ft`) learns composable sparse differences.
``merge_methods()`` lists them, ``merge_config(name, {...})`` builds a validated config. The
command ``lifelong merge`` merges safetensors files. Guide: ``docs/merging.md``.
"""

from __future__ import annotations

from lifelong.merging.io import load_state_dict, save_state_dict
from lifelong.merging.merge import merge, merge_task_vectors
from lifelong.merging.methods import (
    BreadcrumbsConfig,
    BreadcrumbsTIESConfig,
    DAREConfig,
    DARETIESConfig,
    MergeConfig,
    MergeMethod,
    TaskArithmeticConfig,
    TIESConfig,
    config_help,
    elect_sign,
    get_merge_method,
    merge_config,
    merge_methods,
    register_merge,
)
from lifelong.merging.sparse_ft import SparseFineTuning, compose, load_sft, lottery_ticket_sft, save_sft
from lifelong.merging.sparsify import breadcrumbs_mask, magnitude_mask, random_mask, rescale
from lifelong.merging.task_vector import TaskVector, check_compatible

__all__ = [
    "TaskVector",
    "check_compatible",
    "merge",
    "merge_task_vectors",
    "MergeConfig",
    "TaskArithmeticConfig",
    "TIESConfig",
    "DAREConfig",
    "DARETIESConfig",
    "BreadcrumbsConfig",
    "BreadcrumbsTIESConfig",
    "MergeMethod",
    "register_merge",
    "merge_methods",
    "get_merge_method",
    "merge_config",
    "config_help",
    "elect_sign",
    "magnitude_mask",
    "random_mask",
    "breadcrumbs_mask",
    "rescale",
    "load_state_dict",
    "save_state_dict",
    "SparseFineTuning",
    "lottery_ticket_sft",
    "compose",
    "save_sft",
    "load_sft",
]
