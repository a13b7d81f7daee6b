"""Adapters saved by lifelong load in HF PEFT and the reverse, with the same outputs; bad files fail clearly."""

import copy
import json

import peft  # requirements.lock, as transformers: a missing package fails, it does not skip
import pytest
import torch
import transformers
from torch import nn

from lifelong.adapters import (
    ALLoRAConfig,
    LoRAConfig,
    LoRALinear,
    adapter_names,
    inject_adapter,
    load_adapter,
    lora_layers,
    merge_adapters,
    read_adapter,
    save_adapter,
)
from lifelong.encoders import MLP
from lifelong.errors import CheckpointError

IDS = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(0))


def tiny_bert(hidden=16, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=40,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=16,
    )
    return transformers.BertModel(cfg, add_pooling_layer=False).eval()


def out(model):
    with torch.no_grad():
        return model(input_ids=IDS).last_hidden_state


@pytest.mark.parametrize(
    "cfg",
    [
        LoRAConfig(r=4, alpha=8, dropout=0.1, target_modules=["query", "value"], init="random"),
        LoRAConfig(r=2, alpha=3, use_rslora=True, target_modules="all-linear", init="random"),
        ALLoRAConfig(r=3, target_modules=["key", "dense"], init="random"),
    ],
)
def test_saved_by_lifelong_loads_in_peft(tmp_path, cfg):
    base = tiny_bert()
    model = copy.deepcopy(base)
    inject_adapter(model, cfg, "default", seed=1)
    expected = out(model)
    assert not torch.allclose(expected, out(base))
    save_adapter(model, tmp_path, "default", base_model_name_or_path="tiny-bert")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path)).eval()
    assert torch.allclose(out(loaded), expected, atol=1e-6)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "LORA"


@pytest.mark.parametrize(
    "kw",
    [
        dict(r=4, lora_alpha=8, target_modules=["query", "value"]),
        dict(r=2, lora_alpha=5, use_rslora=True, target_modules=["dense", "key"]),
        dict(r=3, lora_alpha=6, target_modules=r".*\.(query|key)"),
    ],
)
def test_saved_by_peft_loads_in_lifelong(tmp_path, kw):
    base = tiny_bert()
    pm = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(init_lora_weights=False, **kw)).eval()
    expected = out(pm)
    pm.save_pretrained(str(tmp_path))
    model = copy.deepcopy(base)
    names = load_adapter(model, tmp_path, "task0")
    assert names and adapter_names(model) == ["task0"]
    assert torch.allclose(out(model), expected, atol=1e-6)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" in n)  # frozen by default


def test_round_trip_lifelong_peft_lifelong_and_trainable(tmp_path):
    base = tiny_bert()
    model = copy.deepcopy(base)
    inject_adapter(model, LoRAConfig(r=2, alpha=4, target_modules=["value"], init="random"), "a", seed=0)
    save_adapter(model, tmp_path / "a", "a")
    pm = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "a"))
    pm.save_pretrained(str(tmp_path / "b"))
    again = copy.deepcopy(base)
    load_adapter(again, tmp_path / "b", "a", is_trainable=True)
    assert torch.allclose(out(again), out(model), atol=1e-6)
    lora = {n for n, p in again.named_parameters() if ".lora_" in n}
    assert len(lora) == 4 and all(p.requires_grad for n, p in again.named_parameters() if n in lora)
    merge_adapters(again)
    assert torch.allclose(out(again), out(model), atol=1e-5)


def test_gated_variant_exports_the_same_function(tmp_path):
    class Gated(LoRALinear):
        def rank_scale(self, name):
            return torch.tensor([1.0, 0.0, 0.5])

    class GatedConfig(LoRAConfig):
        kind = "lora"  # saved as plain LoRA (the gate is folded into B)

        @property
        def layer_class(self):
            return Gated

    base = tiny_bert()
    model = copy.deepcopy(base)
    inject_adapter(model, GatedConfig(r=3, alpha=3, target_modules=["query"], init="random"), seed=0)
    save_adapter(model, tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path)).eval()
    assert torch.allclose(out(loaded), out(model), atol=1e-6)


def test_mlp_round_trip_with_peft(tmp_path):
    torch.manual_seed(0)
    base = nn.Sequential(MLP((8,), (16, 12)), nn.Linear(12, 3))
    x = torch.randn(4, 8)
    model = copy.deepcopy(base)
    inject_adapter(model, LoRAConfig(r=2, alpha=4, target_modules=["net.1", "net.3"], init="random"), seed=0)
    save_adapter(model, tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path)).eval()
    assert torch.allclose(loaded(x), model(x), atol=1e-6)


def _saved(tmp_path, cfg=None):
    model = tiny_bert()
    inject_adapter(model, cfg or LoRAConfig(r=2, target_modules=["query", "value"], init="random"), seed=0)
    save_adapter(model, tmp_path)
    return tmp_path


def test_loading_into_another_base_model_fails_clearly(tmp_path):
    path = _saved(tmp_path)
    wider = tiny_bert(hidden=32)
    before = copy.deepcopy(wider.state_dict())
    with pytest.raises(CheckpointError, match=r"another base model.*16 -> 16 here|another base model.*32 -> 32"):
        load_adapter(wider, path)
    torch.manual_seed(0)
    mlp = nn.Sequential(MLP((16,), (16,)), nn.Linear(16, 2))
    with pytest.raises(CheckpointError, match="another base model: module"):
        load_adapter(mlp, path)
    assert not lora_layers(wider) and all(torch.equal(before[k], v) for k, v in wider.state_dict().items())


def test_bad_files_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no adapter_config.json"):
        load_adapter(tiny_bert(), tmp_path)
    path = _saved(tmp_path / "ok")
    # NaN weights
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path / "adapter_model.safetensors"))
    key = next(iter(tensors))
    tensors[key][0, 0] = float("nan")
    nan_dir = tmp_path / "nan"
    nan_dir.mkdir()
    save_file(tensors, str(nan_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    (nan_dir / "adapter_config.json").write_text((path / "adapter_config.json").read_text())
    model = tiny_bert()
    with pytest.raises(CheckpointError, match="NaN"):
        load_adapter(model, nan_dir)
    assert not lora_layers(model)
    # unsupported PEFT features and other adapter types
    cfg = json.loads((path / "adapter_config.json").read_text())
    for change, match in (
        ({"use_dora": True}, "DoRA"),
        ({"peft_type": "IA3"}, "LoRA adapters"),
        ({"r": 5}, "do not fit rank"),
    ):
        bad = tmp_path / f"bad{len(match)}"
        bad.mkdir()
        (bad / "adapter_config.json").write_text(json.dumps({**cfg, **change}))
        (bad / "adapter_model.safetensors").write_bytes((path / "adapter_model.safetensors").read_bytes())
        with pytest.raises(CheckpointError, match=match):
            read_adapter(bad)
    # corrupt weights file
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "adapter_config.json").write_text(json.dumps(cfg))
    (tmp_path / "corrupt" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_adapter(tmp_path / "corrupt")


def test_save_refuses_nan_and_unknown_adapter(tmp_path):
    from lifelong.adapters import AdapterError

    model = tiny_bert()
    inject_adapter(model, LoRAConfig(r=2, target_modules=["query"]), "a")
    with pytest.raises(AdapterError, match="no adapter named 'b'"):
        save_adapter(model, tmp_path, "b")
    with torch.no_grad():
        lora_layers(model)["encoder.layer.1.attention.self.query"].lora_B["a"].weight.fill_(float("inf"))
    with pytest.raises(AdapterError, match="NaN or inf"):
        save_adapter(model, tmp_path, "a")
    assert not (tmp_path / "adapter_model.safetensors").exists()


def test_allora_settings_travel_in_metadata(tmp_path):
    path = _saved(tmp_path, ALLoRAConfig(r=2, eta=3.0, norm_power=1.0, target_modules=["query"], init="random"))
    config, weights = read_adapter(path)
    assert isinstance(config, ALLoRAConfig) and config.eta == 3.0 and config.norm_power == 1.0
    assert json.loads((path / "adapter_config.json").read_text())["lora_alpha"] == 2
    assert len(weights) == 2
