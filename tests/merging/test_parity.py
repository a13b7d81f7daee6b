"""Our merge methods give the same tensors as mergekit's and PEFT's on the same random inputs.

mergekit (optional extra ``lifelong[merge]``): each registered method against mergekit's
``GeneralizedTaskArithmeticMerge.merge_group`` with the same settings; the random DARE masks
match because both draw one ``torch.bernoulli`` per expert from the same seed (ours from a
seeded ``torch.Generator``, mergekit's from ``torch.manual_seed``). Breadcrumbs matches in
flattened mode (``per_row=False``); the official per-row mode is checked against a per-row
reference written here. PEFT: ``peft.utils.merge_utils`` task arithmetic, TIES, DARE-linear and
DARE-TIES; PEFT's weights scale the merged delta, so they map to our ``alpha`` (equal weights).
Tolerance: 1e-6 absolute + 1e-5 relative in float32 (the same operations in another order).
"""

from __future__ import annotations

import pytest
import torch

from lifelong.merging import breadcrumbs_mask, get_merge_method, merge, merge_config, random_mask

ATOL, RTOL = 1e-6, 1e-5
SHAPES = {"w2d": (64, 48), "b1d": (33,), "w3d": (4, 6, 5)}


def _models(n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
    experts = [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()} for _ in range(n)]
    return base, experts


FLAT = {"per_row": False}  # mergekit ranks the flattened tensor

# (our method, mergekit method, our settings, mergekit settings)
CASES = [
    ("task-arithmetic", "task_arithmetic", {}, {}),
    ("task-arithmetic", "task_arithmetic", {"normalize": True}, {"normalize": True}),
    ("ties", "ties", {"density": 0.3}, {"density": 0.3}),
    ("ties", "ties", {"density": 0.5, "normalize": False}, {"density": 0.5, "normalize": False}),
    ("dare-linear", "dare_linear", {"density": 0.4, "rescale": "l1"}, {"density": 0.4}),
    ("dare-linear", "dare_linear", {"density": 0.4, "rescale": "none"}, {"density": 0.4, "rescale": False}),
    ("dare-ties", "dare_ties", {"density": 0.6, "rescale": "l1"}, {"density": 0.6}),
    ("breadcrumbs", "breadcrumbs", {"density": 0.15, "gamma": 0.006, **FLAT}, {"density": 0.15, "gamma": 0.006}),
    ("breadcrumbs", "breadcrumbs", {"density": 0.5, "gamma": 0.1, **FLAT}, {"density": 0.5, "gamma": 0.1}),
    ("breadcrumbs-ties", "breadcrumbs_ties", {"density": 0.3, "gamma": 0.05, **FLAT}, {"density": 0.3, "gamma": 0.05}),
]


@pytest.mark.parametrize("ours,theirs,our_set,their_set", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_same_tensors_as_mergekit(ours, theirs, our_set, their_set):
    pytest.importorskip("mergekit")
    from mergekit.merge_methods.base import TensorGroup
    from mergekit.merge_methods.registry import get

    base, experts = _models()
    weights, lam = [1.0, 0.5, 0.8], 0.7
    ours_sd = merge(base, experts, ours, weights=weights, seed=11, alpha=lam, **our_set)
    method = get(theirs)
    defaults = {p.name: p.default for p in method.spec.parameters if p.default is not None}
    torch.manual_seed(11)  # mergekit's Bernoulli masks come from the global generator
    for key in base:  # the same key order as ours, so the random stream is consumed alike
        group = TensorGroup.from_tensors([base[key]] + [e[key] for e in experts], base_index=0)
        ids = [e.id for e in group.non_base]
        params = {**defaults, "lambda": lam, **{k: v for k, v in their_set.items() if k not in ("density", "gamma")}}
        params["weight"] = dict(zip(ids, weights))
        for per_input in ("density", "gamma"):
            if per_input in their_set or per_input in defaults:
                params[per_input] = {i: their_set.get(per_input, defaults.get(per_input)) for i in ids}
        expected = method.merge_group(group, **params)
        torch.testing.assert_close(ours_sd[key], expected, atol=ATOL, rtol=RTOL, msg=f"{ours} {key}")


def test_breadcrumbs_mask_equals_mergekit_magnitude_outliers_flattened():
    pytest.importorskip("mergekit")
    from mergekit.sparsify import magnitude_outliers

    g = torch.Generator().manual_seed(3)
    for shape in [(128, 96), (257,), (3, 7, 11)]:
        t = torch.randn(shape, generator=g)
        for density, gamma in [(0.15, 0.006), (0.1, 0.01), (0.9, 0.01), (0.95, 0.2)]:  # the last: gamma shrinks
            got = t * breadcrumbs_mask(t, density, gamma, per_row=False)
            torch.testing.assert_close(got, magnitude_outliers(t, density, gamma=gamma), atol=0, rtol=0)


def _official_rows(t: torch.Tensor, keep: float, remove: float) -> torch.Tensor:
    """Per-row reference: zero the int(remove·d) largest of each last-dim row, then keep the int(keep·d) largest."""
    rows = t.reshape(-1, t.shape[-1]).clone()
    d = rows.shape[1]
    out = torch.zeros_like(rows)
    for r in range(rows.shape[0]):
        order = sorted(range(d), key=lambda j: -abs(float(rows[r, j])))
        top, kept = int(remove * d), int(keep * d)
        for j in order[top : top + kept]:
            out[r, j] = rows[r, j]
    return out.reshape(t.shape)


def test_breadcrumbs_per_row_equals_the_official_per_row_rule():
    g = torch.Generator().manual_seed(5)
    for shape in [(20, 64), (50,), (3, 4, 40)]:
        t = torch.randn(shape, generator=g)
        got = t * breadcrumbs_mask(t, 0.15, 0.05, per_row=True)
        torch.testing.assert_close(got, _official_rows(t, 0.15, 0.05), atol=0, rtol=0)
        # per row differs from flattened on a tensor whose rows have different scales
    t = torch.randn(8, 50, generator=g) * torch.logspace(0, 2, 8)[:, None]
    per_row = breadcrumbs_mask(t, 0.2, 0.02, per_row=True)
    flat = breadcrumbs_mask(t, 0.2, 0.02, per_row=False)
    assert (per_row.sum(1) == 10).all()  # int(0.2 * 50) kept in every row
    assert flat[0].sum() < 10 and flat[-1].sum() > 10  # flattened keeps the large rows' entries
    assert per_row.sum() == flat.sum() == 80


@pytest.mark.parametrize("name", ["task_arithmetic", "ties", "dare_linear", "dare_ties"])
def test_same_tensors_as_peft_merge_utils(name):
    merge_utils = pytest.importorskip("peft.utils.merge_utils")
    g = torch.Generator().manual_seed(7)
    tensors = [torch.randn(40, 30, generator=g) for _ in range(4)]
    lam, density = 0.6, 0.35
    if name == "task_arithmetic":
        w = [0.3, 1.0, 0.5, 0.8]
        expected = merge_utils.task_arithmetic(tensors, torch.tensor(w))
        ours = get_merge_method(name).fn(torch.stack(tensors), torch.tensor(w), merge_config(name), None)
        torch.testing.assert_close(ours, expected, atol=ATOL, rtol=RTOL)
        return
    # PEFT: weights multiply the deltas, the disjoint merge divides by the count of agreeing deltas;
    # with equal weights lam that is our disjoint mean (normalize) scaled by alpha = lam
    fn = getattr(merge_utils, name)
    torch.manual_seed(13)
    expected = fn(tensors, torch.full((4,), lam), density)
    settings = {"density": density, "alpha": lam}
    if name.startswith("dare"):
        settings["rescale"] = "inverse"
    if name != "dare_linear":
        settings["normalize"] = True
    config = merge_config(name, settings)
    ours = lam * get_merge_method(name).fn(
        torch.stack(tensors), torch.ones(4), config, torch.Generator().manual_seed(13)
    )
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=RTOL)


def test_dare_rescaling_keeps_the_expected_value():
    # the rescaled deltas equal tau / density where kept, zero elsewhere, and the kept share is ~ density
    g = torch.Generator().manual_seed(0)
    t = torch.randn(200, 200, generator=g)
    for density in (0.1, 0.5):
        mask = random_mask(t, density, torch.Generator().manual_seed(1))
        config = merge_config("dare-linear", {"density": density, "rescale": "inverse"})
        out = get_merge_method("dare-linear").fn(t[None], torch.ones(1), config, torch.Generator().manual_seed(1))
        torch.testing.assert_close(out, t * mask / density)
        share = mask.float().mean().item()
        sd = (density * (1 - density) / t.numel()) ** 0.5
        assert abs(share - density) < 5 * sd
        assert abs(out.sum().item() - t.sum().item()) < 5 * (t.pow(2).sum().item() * (1 - density) / density) ** 0.5
