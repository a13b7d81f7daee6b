"""Paper 57 (Composable Sparse Fine-Tuning, arXiv 2110.07560): the toy's pieces (language permutation, matched
budgets, composition keeps the parameter count, the source SFT is swapped out at test), the quick reproduction's
outputs, and the verdict on synthetic numbers (held, and a control it must reject)."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong.merging.sparse_ft import compose
from lifelong.papers import lt_sft, paper_settings, reproduce
from lifelong.papers.lt_sft import (
    ARMS,
    AdditiveCoupling,
    Setup,
    check,
    language_adapter,
    language_permutation,
    language_sft,
    load_adapter,
    stacked_adapters,
    task_sft,
)


def _tiny() -> dict:
    cfg = paper_settings("lt-sft", "quick")
    cfg |= {"pretrain": {"steps": 20, "lr": 0.003}, "full_steps": 5, "sparse_steps": 5, "labelled": 100}
    return cfg


def test_target_language_cycles_exactly_the_chosen_informative_pixels():
    x = torch.rand(50, 64)
    x[:, :8] = 0.0  # uninformative pixels: never permuted
    perm = language_permutation(x, 12, seed=3)
    assert sorted(perm.tolist()) == list(range(64))
    moved = (perm != torch.arange(64)).nonzero().flatten()
    assert len(moved) == 12 and int(moved.min()) >= 8
    assert torch.equal(perm, language_permutation(x, 12, seed=3))
    assert not torch.equal(perm, language_permutation(x, 12, seed=4))


def test_sfts_have_the_adapter_budget_and_compose_without_new_parameters():
    setup = Setup(_tiny(), seed=0)
    phi_src, _ = language_sft(setup, "src", 0.003, "lt")
    phi_tgt, _ = language_sft(setup, "tgt", 0.003, "lt")
    phi_t = task_sft(setup, phi_src, 0.003, "lt")
    assert phi_src.num_selected() == phi_tgt.num_selected() == setup.k_lang
    assert phi_t.num_selected() == setup.k_task
    assert set(phi_t.masks) == {n for n in setup.theta0 if n.startswith("encoder.")}
    assert set(phi_t.dense) == {"classifier.weight", "classifier.bias"}  # the task head, trained in full
    composed = compose(setup.theta0, phi_tgt, phi_t)
    model = setup.at(composed)  # asserts θ₀'s parameter count
    assert sum(p.numel() for p in model.parameters()) == setup.n_params
    # the source SFT is swapped out: θ₀ + φ_L(tgt) + φ_T differs from θ₀ + φ_L(src) + φ_T only by φ_L(tgt) − φ_L(src)
    swapped = compose(setup.theta0, phi_src, phi_t)
    for key in phi_t.masks:
        torch.testing.assert_close(composed[key] - swapped[key], phi_tgt.diff[key] - phi_src.diff[key])
    # the two language SFTs select different entries (the target's pixels moved)
    assert any(not torch.equal(phi_src.masks[k], phi_tgt.masks[k]) for k in phi_src.masks)
    # the task SFT really starts from θ₀ + φ_L(src): trained from θ₀ alone it comes out different
    phi_alone = task_sft(setup, None, 0.003, "lt")
    assert any(not torch.allclose(phi_t.diff[k], phi_alone.diff[k]) for k in phi_t.masks)


def test_theta0_pretraining_leaves_out_the_language_validation_tenth(monkeypatch):
    seen = []
    real = lt_sft._recon_loss
    monkeypatch.setattr(lt_sft, "_recon_loss", lambda x, cfg, seed: seen.append(x) or real(x, cfg, seed))
    cfg = _tiny()
    setup = Setup(cfg, seed=0)
    x_pre = seen[0]
    train_u, val_u = setup.unlabeled["src"]
    assert len(x_pre) == len(train_u) + cfg["labelled"]
    torch.testing.assert_close(x_pre[: len(train_u)], train_u)
    assert not any(bool((x_pre == row).all(1).any()) for row in val_u[:20])


def test_every_language_sft_kind_gets_the_same_l1(monkeypatch):
    from lifelong.merging import sparse_ft

    calls = []
    real = sparse_ft.lottery_ticket_sft
    monkeypatch.setattr(sparse_ft, "lottery_ticket_sft", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    setup = Setup(_tiny(), seed=0)
    for kind in ("lt", "random", "dense"):
        language_sft(setup, "src", 0.003, kind)
    l1 = setup.cfg["lang_l1"]
    assert calls[0]["full_l1"] == calls[0]["sparse_l1"] == l1 > 0
    assert calls[1]["sparse_l1"] == calls[2]["sparse_l1"] == l1


def test_invertible_coupling_inverts_and_counts_in_the_language_budget():
    coupling = AdditiveCoupling(64, 3)
    x = torch.randn(7, 64)
    torch.testing.assert_close(coupling(x), x)  # starts as the identity
    for p in coupling.parameters():
        torch.nn.init.normal_(p, std=0.3)
    assert not torch.allclose(coupling(x), x, atol=1e-3)
    torch.testing.assert_close(coupling.inverse(coupling(x)), x, atol=1e-4, rtol=1e-4)
    cfg = _tiny()
    setup = Setup(cfg, seed=0)
    model = setup.fresh()
    layers_only = model.add_adapter("probe", cfg["lang_rank"], 0)
    assert setup.k_lang == layers_only + sum(p.numel() for p in AdditiveCoupling(64, cfg["inv_rank"]).parameters())


def test_swapping_in_the_target_adapter_changes_target_predictions_and_bad_states_fail():
    setup = Setup(_tiny(), seed=0)
    src, _ = language_adapter(setup, "src", 0.03)
    tgt, _ = language_adapter(setup, "tgt", 0.03)
    assert any(k.startswith("adapters.lang.inv.") for k in src)  # the invertible input part is in the stack
    model = stacked_adapters(setup, src, 0.03)
    for key, value in src.items():
        torch.testing.assert_close(model.state_dict()[key], value)  # the source adapter really was loaded
    xt = setup.test["tgt"][0]
    with torch.no_grad():
        before = model(xt)
        load_adapter(model, tgt)
        after = model(xt)
    for key, value in tgt.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError):
        load_adapter(model, {f"adapters.lang.nope.{k}": v for k, v in tgt.items()})  # loads nothing
    with pytest.raises(ValueError):
        load_adapter(model, dict(list(tgt.items())[:2]))  # a partial stack


def _fake_runs(monkeypatch, table):
    def fake(cfg, seed):
        row = {arm: table[arm][seed] for arm in ARMS}
        row |= {f"{a}_source_test": 90.0 for a in ("lt_sft", "task_only", "dense_diffs", "random_masks")}
        row |= {"adapters_source_test": 90.0, "k_lang": 10, "k_task": 20, "n_encoder": 200, "theta0_params": 300}
        return row | {"adapter_inference_params": 330, "lt_sft_inference_params": 300, "lr_task_lt_sft": 0.01}

    monkeypatch.setattr(lt_sft, "run_seed", fake)


def test_verdict_holds_on_a_clear_gain_and_rejects_the_control_and_a_tie(monkeypatch):
    cfg = paper_settings("lt-sft", "quick") | {"seeds": [0, 1, 2, 3]}
    base = [60.0, 62.0, 58.0, 61.0]
    table = {
        "task_only": base,
        "lt_sft": [b + 9 + 0.5 * i for i, b in enumerate(base)],
        "stacked_adapters": [b + 4 for b in base],
        "dense_diffs": base,
        "random_masks": base,
        "source_sft_at_test": [b + 0.3 for b in base],
    }
    _fake_runs(monkeypatch, table)
    claim = check(cfg, "quick")
    assert claim.held and claim.measured["gain_held"] and claim.measured["adapters_held"]
    assert not claim.measured["control_held"]
    table["stacked_adapters"] = [v + (1 if i % 2 else -1) for i, v in enumerate(table["lt_sft"])]  # a tie
    assert not check(cfg, "quick").held
    table["stacked_adapters"] = [b + 4 for b in base]
    table["lt_sft"] = [b + 4 for b in base]  # gain below the 5-point margin
    assert not check(cfg, "quick").held


@pytest.fixture(scope="module")
def quick():
    return reproduce("lt-sft", "quick")


def test_quick_reproduction_reports_every_arm_and_keeps_the_parameter_count(quick):
    claim, cfg = quick, paper_settings("lt-sft", "quick")
    json.dumps(claim.to_dict())
    m = claim.measured
    assert claim.paper == "lt-sft" and claim.scale == "quick"
    assert claim.held == (m["gain_held"] and m["adapters_held"])
    theta0, lt, adapters = (
        int(v) for v in m["parameters at inference: theta0 / LT-SFT / stacked adapters"].split(" / ")
    )
    assert lt == theta0 < adapters  # measured on the composed state dict; the adapters add their stacks
    swap, control = m["swap lt_sft - source_sft_at_test/mean"], m["control source_sft_at_test - task_only/mean"]
    assert swap == pytest.approx(m["lt_sft target acc"] - m["source_sft_at_test target acc"], abs=0.02)
    assert swap + control == pytest.approx(m["lt_sft - task_only/mean"], abs=0.02)
    for arm in ARMS:
        assert 0 <= m[f"{arm} target acc"] <= 100
    # every arm learned the source task (the transfer question is about the target)
    for key in [k for k in m if k.endswith("source acc (source SFT)") or k.endswith("(source adapter)")]:
        assert m[key] > 70, key
    for key in [k for k in m if k.startswith("lr_")]:
        assert all(float(v) in cfg["lr_grid"] for v in m[key].split("; "))
    # the shift hurts: without a target-language module the target is clearly worse than the source
    assert m["task_only target acc"] < m["task_only source acc (source SFT)"] - 5
