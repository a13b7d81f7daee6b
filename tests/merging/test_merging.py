"""Task vectors, masks, merge methods and their configs: behaviour that breaks when the code does."""

from __future__ import annotations

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.merging import (
    BreadcrumbsConfig,
    TaskVector,
    breadcrumbs_mask,
    config_help,
    elect_sign,
    get_merge_method,
    magnitude_mask,
    merge,
    merge_config,
    merge_methods,
    merge_task_vectors,
)


def _sd(seed: int, scale: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "l1.weight": scale * torch.randn(16, 8, generator=g),
        "l1.bias": scale * torch.randn(16, generator=g),
        "bn.num_batches_tracked": torch.tensor(seed),
    }


def test_task_vector_arithmetic_and_apply_round_trip():
    base, ft_a, ft_b = _sd(0), _sd(1), _sd(2)
    ta, tb = TaskVector.between(base, ft_a), TaskVector.between(base, ft_b)
    assert set(ta) == {"l1.weight", "l1.bias"}  # integer buffers are not part of a task vector
    back = ta.apply_to(base)
    torch.testing.assert_close(back["l1.weight"], ft_a["l1.weight"])
    assert back["bn.num_batches_tracked"] == base["bn.num_batches_tracked"]  # copied from the base
    total = sum([ta, tb])
    torch.testing.assert_close(total["l1.bias"], ta["l1.bias"] + tb["l1.bias"])
    torch.testing.assert_close((ta - tb)["l1.weight"], -(tb - ta)["l1.weight"])
    torch.testing.assert_close((0.5 * ta)["l1.weight"], ta["l1.weight"] / 2)
    torch.testing.assert_close(ta.apply_to(base, scale=-1.0)["l1.bias"], base["l1.bias"] - ta["l1.bias"])
    assert ta.numel() == 16 * 8 + 16 and ta.norm() > 0


def test_mismatched_keys_and_shapes_name_the_expert_and_the_key():
    base = _sd(0)
    other = dict(_sd(1))
    other.pop("l1.bias")
    with pytest.raises(ConfigError, match=r"b\.safetensors.*missing: l1\.bias"):
        merge(base, [_sd(1), other], names=["a.safetensors", "b.safetensors"])
    wrong = dict(_sd(1), **{"l1.weight": torch.zeros(8, 16)})
    with pytest.raises(ConfigError, match=r"l1\.weight \(8, 16\) vs base \(16, 8\)"):
        merge(base, [wrong])
    with pytest.raises(ConfigError, match="at least one expert"):
        merge(base, [])


def test_one_expert_task_arithmetic_gives_back_the_expert_and_alpha_scales():
    base, ft = _sd(0), _sd(1)
    out = merge(base, [ft], "task-arithmetic")
    torch.testing.assert_close(out["l1.weight"], ft["l1.weight"])
    half = merge(base, [ft], "task_arithmetic", alpha=0.5)  # underscores name the same method
    torch.testing.assert_close(half["l1.weight"], (base["l1.weight"] + ft["l1.weight"]) / 2)


def test_ties_sign_election_and_disjoint_mean_by_hand():
    d = torch.tensor([[2.0, -1.0, 0.0], [1.0, 3.0, 0.0], [-4.0, -1.0, 0.0]])
    # column 0 sums to -1 -> elected "-": only -4 agrees; column 1 sums to 1 -> "+": only 3 agrees
    assert elect_sign(d, "sum").tolist() == [[False, False, False], [False, True, False], [True, False, False]]
    # by count, column 0 has two "+" -> "+"; column 1 two "-" -> "-"
    assert elect_sign(d, "count")[:, 0].tolist() == [True, True, False]
    merged = get_merge_method("ties").fn(d, torch.ones(3), merge_config("ties", {"density": 1.0}), None)
    assert merged.tolist() == [-4.0, 3.0, 0.0]
    count = get_merge_method("ties").fn(d, torch.ones(3), merge_config("ties", {"density": 1.0, "sign": "count"}))
    assert count.tolist() == [1.5, -1.0, 0.0]  # mean of (2, 1) and of (-1, -1)


def test_magnitude_and_breadcrumbs_masks_keep_the_right_entries():
    t = torch.arange(1.0, 101.0)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    top = magnitude_mask(t, 0.1)
    assert sorted(t[top].tolist()) == list(range(91, 101))
    band = breadcrumbs_mask(t, 0.2, 0.05)  # drop 96..100, keep the next 20: 76..95
    assert sorted(t[band].tolist()) == list(range(76, 96))
    no_outliers = breadcrumbs_mask(t, 0.2, 0.0)  # gamma 0 is plain top-k magnitude
    assert torch.equal(no_outliers, magnitude_mask(t, 0.2))
    assert breadcrumbs_mask(torch.tensor(3.0), 0.1, 0.01).item()  # scalars are kept per row (official)


def test_breadcrumbs_merge_removes_outliers_and_small_entries():
    base = {"w": torch.zeros(4, 100)}
    delta = torch.linspace(0.01, 1.0, 100).repeat(4, 1)
    delta[:, -1] = 50.0  # one outlier per row
    merged = merge(base, [{"w": delta}], "breadcrumbs", density=0.1, gamma=0.01, alpha=1.0)["w"]
    assert (merged[:, -1] == 0).all() and (merged != 0).sum(1).tolist() == [10] * 4
    assert merged.max() < 1.0 and merged[merged != 0].min() > 0.85


def test_dare_is_seeded_and_rescaled():
    base, ft = _sd(0), _sd(1, scale=2.0)
    a = merge(base, [ft], "dare-linear", density=0.5, seed=3)
    b = merge(base, [ft], "dare-linear", density=0.5, seed=3)
    c = merge(base, [ft], "dare-linear", density=0.5, seed=4)
    assert torch.equal(a["l1.weight"], b["l1.weight"]) and not torch.equal(a["l1.weight"], c["l1.weight"])
    tau = ft["l1.weight"] - base["l1.weight"]
    kept = a["l1.weight"] != base["l1.weight"]
    torch.testing.assert_close((a["l1.weight"] - base["l1.weight"])[kept], 2 * tau[kept])


def test_low_precision_dtypes_are_kept():
    base = {k: v.to(torch.bfloat16) for k, v in _sd(0).items() if v.is_floating_point()}
    ft = {k: v.to(torch.bfloat16) for k, v in _sd(1).items() if v.is_floating_point()}
    out = merge(base, [ft, ft], "ties", density=0.5)
    assert all(v.dtype == torch.bfloat16 for v in out.values())


def test_configs_validate_with_a_message_naming_the_fix():
    assert BreadcrumbsConfig().density == 0.15 and BreadcrumbsConfig().gamma == 0.006
    assert BreadcrumbsConfig().per_row is True and BreadcrumbsConfig().alpha == 0.2
    with pytest.raises(ConfigError, match=r"density must lie in \(0, 1\]"):
        merge_config("ties", {"density": 0})
    with pytest.raises(ConfigError, match="density \\+ gamma must be <= 1"):
        merge_config("breadcrumbs", {"density": 0.95, "gamma": 0.1})
    with pytest.raises(ConfigError, match="valid keys: alpha, density, gamma, per_row"):
        merge_config("breadcrumbs", {"beta": 0.1})
    with pytest.raises(ConfigError, match="expects a finite number"):
        merge_config("dare-ties", {"density": "lots"})
    with pytest.raises(ConfigError, match="rescale must be one of"):
        merge_config("dare-linear", {"rescale": "l3"})
    with pytest.raises(ConfigError, match="unknown merge method 'slerp'; choose one of"):
        merge_config("slerp")
    assert merge_config("dare_ties", {"density": "0.3", "normalize": "true"}).normalize is True
    with pytest.raises(ConfigError, match="either a config or keyword settings"):
        merge(_sd(0), [_sd(1)], "breadcrumbs", BreadcrumbsConfig(), density=0.1)
    with pytest.raises(ConfigError, match="takes a BreadcrumbsConfig"):
        merge(_sd(0), [_sd(1)], "breadcrumbs", merge_config("ties"))
    with pytest.raises(ConfigError, match="weights must be 2 finite numbers"):
        merge(_sd(0), [_sd(1), _sd(2)], weights=[1.0])


def test_registry_lists_every_method_with_help():
    assert merge_methods() == [
        "breadcrumbs",
        "breadcrumbs-ties",
        "dare-linear",
        "dare-ties",
        "task-arithmetic",
        "ties",
    ]
    for name in merge_methods():
        rows = config_help(name)
        assert rows[0]["name"] == "alpha" and all(r["help"] for r in rows)


def test_merge_task_vectors_equals_merge_of_state_dicts():
    base, experts = _sd(0), [_sd(1), _sd(2), _sd(3)]
    vectors = [TaskVector.between(base, e) for e in experts]
    tv = merge_task_vectors(vectors, "breadcrumbs", density=0.3, gamma=0.05, alpha=0.4)
    direct = merge(base, experts, "breadcrumbs", density=0.3, gamma=0.05, alpha=0.4)
    torch.testing.assert_close(tv.apply_to(base)["l1.weight"], direct["l1.weight"])
