"""LoRA core: injection by patterns, the layer's function, named adapters, merging, accounting, bad input."""

import copy

import pytest
import torch
from torch import nn

from lifelong.adapters import (
    LORA_INITS,
    AdapterError,
    LoRAConfig,
    LoRALinear,
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
    register_lora_init,
    set_active_adapters,
    unload,
    unmerge_adapters,
    wrap_targets,
)
from lifelong.encoders import MLP
from lifelong.errors import ConfigError


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(MLP((8,), (16, 12)), nn.Linear(12, 3))


def tiny_bert(seed=0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=16,
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


X = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))


def test_inject_by_suffix_regex_and_all_linear():
    bert = tiny_bert()
    names = inject_adapter(bert, LoRAConfig(r=2, target_modules=["query", "value"]), "a")
    assert names == [f"encoder.layer.{i}.attention.self.{t}" for i in range(2) for t in ("query", "value")]
    assert all(isinstance(bert.get_submodule(n), LoRALinear) for n in names)
    regex = find_targets(tiny_bert(), r".*\.attention\.self\.(key|value)")
    assert regex == [f"encoder.layer.{i}.attention.self.{t}" for i in range(2) for t in ("key", "value")]
    assert len(find_targets(tiny_bert(), "all-linear")) == 12
    assert find_targets(tiny_bert(), ["dense"], exclude_modules=["intermediate.dense"]) == [
        f"encoder.layer.{i}.{p}.dense" for i in range(2) for p in ("attention.output", "output")
    ]
    # the insides of a LoRA layer are never targets
    assert find_targets(bert, "all-linear") == find_targets(tiny_bert(), "all-linear")


def test_unmatched_pattern_lists_candidates():
    with pytest.raises(ConfigError) as e:
        inject_adapter(tiny_bert(), LoRAConfig(r=2, target_modules=["qury", "value"]))
    msg = str(e.value)
    assert "'qury'" in msg and "did you mean 'query'" in msg and "value" in msg and "dense" in msg
    with pytest.raises(ConfigError, match="regex"):
        find_targets(mlp(), r"layers\.\d+")
    with pytest.raises(ConfigError, match="nn.Linear modules only"):
        find_targets(tiny_bert(), ["attention"])  # BertAttention, not a Linear layer


def test_failed_injection_changes_nothing():
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError):
        inject_adapter(model, LoRAConfig(r=4, target_modules=["net.1", "nope"]))
    with pytest.raises(ConfigError, match="larger than layer '1' allows"):
        inject_adapter(model, LoRAConfig(r=4, target_modules="all-linear"))  # last layer is 12 -> 3
    assert not lora_layers(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"r": 0}, "rank"),
        ({"r": 2.5}, "rank"),
        ({"alpha": -1}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"target_modules": []}, "target_modules"),
        ({"target_modules": "("}, "regular expression"),
        ({"init": "magic"}, "init"),
    ],
)
def test_bad_config_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        LoRAConfig(**kw)


def test_rank_larger_than_layer_allows():
    with pytest.raises(ConfigError, match=r"min\(in=8, out=16\) = 8"):
        inject_adapter(mlp(), LoRAConfig(r=9, target_modules=["net.1"]))


def test_zero_init_keeps_function_and_forward_is_base_plus_scaled_ba():
    model, ref = mlp(), mlp()
    inject_adapter(model, LoRAConfig(r=4, alpha=8, target_modules=["net.1", "net.3"]), seed=0)
    assert torch.equal(model(X), ref(X))  # B = 0
    layer = model[0].net[1]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    expected = ref[0].net[1](X) + 2.0 * (X @ a.T) @ b.T
    assert torch.allclose(layer(X), expected, atol=1e-6)
    assert layer.weight is layer.base_layer.weight and layer.in_features == 8 and layer.out_features == 16


def test_rslora_scaling_and_seeded_init():
    assert LoRAConfig(r=4, alpha=8, use_rslora=True).scaling == pytest.approx(4.0)
    m1, m2 = mlp(), mlp()
    cfg = LoRAConfig(r=4, target_modules=["net.1"], init="random")
    inject_adapter(m1, cfg, seed=3)
    inject_adapter(m2, cfg, seed=3)
    assert torch.equal(m1(X), m2(X))
    assert not torch.equal(m1(X), mlp()(X))


def test_freeze_base_and_parameter_accounting():
    model = mlp()
    inject_adapter(model, LoRAConfig(r=4, target_modules=["net.1", "net.3"]), "t0")
    counts = count_parameters(model)
    lora = 4 * (8 + 16) + 4 * (16 + 12)
    base = sum(p.numel() for p in mlp().parameters())
    assert counts.trainable == lora and counts.total == base + lora and counts.adapters == {"t0": lora}
    assert "trainable params: 208" in str(counts)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)


def test_named_adapters_activation_by_name():
    model = mlp()
    cfg = LoRAConfig(r=2, target_modules=["net.1"], init="random")
    inject_adapter(model, cfg, "a", seed=1)
    inject_adapter(model, cfg, "b", seed=2)
    assert adapter_names(model) == ["a", "b"]
    layer = model[0].net[1]
    base = layer.base_layer(X)
    da, db = layer.lora_delta(X, "a"), layer.lora_delta(X, "b")
    assert layer.active_adapters == ["b"]  # the newest one, as PEFT's set_adapter
    set_active_adapters(model, "a")
    assert torch.allclose(layer(X), base + da, atol=1e-6)
    set_active_adapters(model, ["a", "b"])
    assert torch.allclose(layer(X), base + da + db, atol=1e-6)
    with adapters_disabled(model):
        assert torch.equal(layer(X), base)
    assert layer.active_adapters == ["a", "b"]
    with pytest.raises(AdapterError, match=r"unknown adapter\(s\) \['c'\]"):
        set_active_adapters(model, ["c"])
    with pytest.raises(AdapterError, match="already has an adapter named 'a'"):
        inject_adapter(model, cfg, "a")
    delete_adapter(model, "a")
    assert adapter_names(model) == ["b"] and layer.active_adapters == ["b"]


def test_merge_unmerge_exact_and_merging_twice():
    model = tiny_bert()
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(0))
    cfg = LoRAConfig(r=4, alpha=8, target_modules=["query", "value", "dense"], init="random")
    inject_adapter(model, cfg, "a", seed=0)
    inject_adapter(model, cfg, "b", seed=1)
    set_active_adapters(model, ["a", "b"])
    original = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(input_ids=ids).last_hidden_state
    merge_adapters(model)
    assert torch.allclose(model(input_ids=ids).last_hidden_state, out, atol=1e-5)
    assert any(not torch.equal(original[k], v) for k, v in model.state_dict().items())
    with pytest.raises(AdapterError, match="already merged"):
        merge_adapters(model, ["a"])
    unmerge_adapters(model, "b")  # partial: subtract
    unmerge_adapters(model)  # the rest: bit-exact restore
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())
    with pytest.raises(AdapterError, match="not merged"):
        lora_layers(model)["encoder.layer.0.attention.self.query"].unmerge(["a"])
    assert torch.equal(model(input_ids=ids).last_hidden_state, out)


def test_nan_adapter_cannot_be_merged_or_folded():
    model = mlp()
    inject_adapter(model, LoRAConfig(r=2, target_modules=["net.1", "net.3"]), "bad")
    with torch.no_grad():
        model[0].net[3].lora_A["bad"].weight[0, 0] = float("nan")
    before = model[0].net[1].base_layer.weight.clone()
    with pytest.raises(AdapterError, match=r"layer '0\.net\.3'.*NaN"):
        merge_adapters(model)
    with pytest.raises(AdapterError, match="NaN"):
        fold_adapter(model, "bad")
    with pytest.raises(AdapterError, match="NaN"):
        check_finite(model)
    assert torch.equal(model[0].net[1].base_layer.weight, before)  # nothing half-merged


def test_fold_and_unload():
    model, ref = mlp(), mlp()
    inject_adapter(model, LoRAConfig(r=2, target_modules="all-linear", init="random"), "a", seed=0)
    out = model(X)
    fold_adapter(model, "a")
    assert adapter_names(model) == [] and torch.allclose(model(X), out, atol=1e-6)
    inject_adapter(model, LoRAConfig(r=2, target_modules=["net.1"], init="random"), "b", seed=1)
    out = model(X)
    plain = unload(model)
    assert not lora_layers(plain) and isinstance(plain[0].net[1], nn.Linear)
    assert torch.allclose(plain(X), out, atol=1e-6)
    assert set(plain.state_dict()) == set(ref.state_dict())


def test_wrap_targets_keeps_function_and_layout():
    model, ref = mlp(), mlp()
    wrap_targets(model, LoRAConfig(r=2, target_modules=["net.1"]))
    assert torch.equal(model(X), ref(X))
    assert "0.net.1.base_layer.weight" in model.state_dict()


def test_dropout_is_seeded_by_the_generator():
    outs = []
    for _ in range(2):
        model = mlp()
        g = torch.Generator().manual_seed(5)
        inject_adapter(model, LoRAConfig(r=2, dropout=0.5, target_modules=["net.1"], init="random"), generator=g)
        model.train()
        outs.append(model(X))
    assert torch.equal(outs[0], outs[1])
    model.eval()
    layer = model[0].net[1]
    assert torch.allclose(layer(X), layer.base_layer(X) + layer.lora_delta(X, "default"))


class GatedLoRA(LoRALinear):
    """A variant with one learnable gate per rank component (what TriAdaptLoRA/CoDyRA-style methods need)."""

    def add_adapter(self, name, config, generator=None):
        super().add_adapter(name, config, generator)
        self.gates = getattr(self, "gates", nn.ParameterDict())
        self.gates[name] = nn.Parameter(torch.linspace(0.0, 1.0, config.r))

    def rank_scale(self, name):
        return self.gates[name]

    def extra_adapter_parameters(self, name):
        return [self.gates[name]]


class GatedConfig(LoRAConfig):
    kind = "gated-test"

    @property
    def layer_class(self):
        return GatedLoRA


def test_subclass_hooks_gates_and_custom_init():
    @register_lora_init("ones-test")
    def ones(layer, name, generator):
        nn.init.ones_(layer.lora_A[name].weight)
        nn.init.ones_(layer.lora_B[name].weight)

    try:
        model = mlp()
        inject_adapter(model, LoRAConfig(r=2, target_modules=["net.1"]), "plain")  # a plain layer first ...
        inject_adapter(model, GatedConfig(r=3, target_modules=["net.1"], init="ones-test"), "g")  # ... upgraded
        layer = model[0].net[1]
        assert isinstance(layer, GatedLoRA) and layer.adapter_names == ["plain", "g"]
        assert torch.equal(layer.lora_A["g"].weight, torch.ones(3, 8))
        gates = layer.gates["g"]
        assert any(p is gates for p in adapter_parameters(model, "g")) and gates.requires_grad
        expected = layer.base_layer(X) + layer.scaling("g") * ((X @ torch.ones(8, 3)) * gates) @ torch.ones(3, 16)
        assert torch.allclose(layer(X), expected, atol=1e-5)
        out = model(X)
        merge_adapters(model, "g")
        assert torch.allclose(model(X), out, atol=1e-5)  # the gate is part of the merged update
        unmerge_adapters(model)
    finally:
        LORA_INITS.pop("ones-test", None)


class _OtherLayer(LoRALinear):
    pass


class _Other(LoRAConfig):
    kind = "other-test"

    @property
    def layer_class(self):
        return _OtherLayer


def test_injection_into_a_layer_of_an_unrelated_variant_fails():
    model = mlp()
    inject_adapter(model, GatedConfig(r=2, target_modules=["net.1"]), "g")
    with pytest.raises(ConfigError, match="cannot run them"):
        inject_adapter(model, _Other(r=2, target_modules=["net.1"]), "x")


def test_unknown_adapter_errors():
    model = mlp()
    with pytest.raises(AdapterError, match="no adapter named 'x'"):
        fold_adapter(model, "x")
    inject_adapter(model, LoRAConfig(r=2, target_modules=["net.1"]), "a")
    with pytest.raises(AdapterError, match="no adapter named 'x'.*'a'"):
        fold_adapter(model, "x")


def test_lora_package_keeps_its_import_path_and_error_home():
    from lifelong.adapters import lora
    from lifelong.adapters.lora import config, layer, model
    from lifelong.errors import AdapterError as HomeError
    from lifelong.errors import LifelongError

    assert lora.AdapterError is HomeError is AdapterError and issubclass(HomeError, (LifelongError, ValueError))
    homes = (config, layer, model)
    for name in lora.__all__:
        if name != "AdapterError":
            assert any(getattr(m, name, None) is getattr(lora, name) for m in homes), name
    assert LoRAConfig().layer_class is LoRALinear  # resolved across config.py -> layer.py
