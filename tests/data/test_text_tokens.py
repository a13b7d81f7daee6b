"""Text loaders with representation="tokens": token ids for text backbones, no encoder run."""

import json

import numpy as np
import pytest
import torch

import lifelong.data.encode as encode_mod
import lifelong.encoders.text as encoders_text
from conftest import CLINC, HashEncoder, needs_clinc
from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.data.clinc150 import load_clinc150
from lifelong.data.textfile import load_text_file
from lifelong.data.tokens import text_token_dataset
from lifelong.errors import ConfigError, DataError
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental


def _no_encoding(monkeypatch):
    """Make every way of running a sentence encoder fail loudly."""

    def boom(*a, **k):
        raise AssertionError("the sentence encoder ran for representation='tokens'")

    monkeypatch.setattr(encode_mod, "make_encoder", boom)
    monkeypatch.setattr(encode_mod, "encode_splits", boom)
    monkeypatch.setattr(encoders_text, "make_text_encoder", boom)
    monkeypatch.setattr(encoders_text.TextEncoder, "encode", boom)


def _assert_same(tokens, reference):
    assert tokens.name == reference.name
    for k in ("x_train", "y_train", "x_test", "y_test", "domains_train", "domains_test"):
        a, b = getattr(tokens, k), getattr(reference, k)
        assert (a is None and b is None) or (a.dtype == b.dtype and torch.equal(a, b)), k
    assert list(tokens.class_names) == list(reference.class_names)
    assert tokens.coarse_labels == reference.coarse_labels
    drop = ("encoder", "feature_cache")
    assert {k: v for k, v in tokens.meta.items() if k not in drop} == {
        k: v for k, v in reference.meta.items() if k not in drop
    }


@needs_clinc
def test_clinc150_tokens_equal_text_token_dataset_of_the_features(tmp_path):
    kw = dict(data_root=CLINC, domains=[0], max_per_class=5, cache_dir=tmp_path)
    feats = load_clinc150(encoder=HashEncoder(), **kw)
    tokens = load_clinc150(representation="tokens", max_length=32, **{**kw, "cache_dir": tmp_path / "tokens"})
    _assert_same(tokens, text_token_dataset(feats, "minilm", max_length=32))
    assert tokens.x_train.shape == (75, tokens.x_train.shape[1]) and tokens.x_train.shape[1] <= 32
    assert tokens.meta["inputs"] == "token ids" and tokens.x_train[:, 0].eq(101).all()  # [CLS] first
    assert "feature_cache" not in tokens.meta and not (tmp_path / "tokens").exists()  # nothing encoded or cached
    assert load_dataset("clinc150", representation="tokens", **kw).x_test.shape[0] == 75


def test_text_file_tokens_equal_text_token_dataset_of_the_features(tmp_path):
    rows = [{"text": f"{w} please, number {i}", "label": w} for i in range(6) for w in ("pay", "fly", "rain")]
    path = tmp_path / "intents.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    kw = dict(test_fraction=0.5, seed=3, cache_dir=tmp_path / "cache")
    feats = load_text_file(path, encoder=HashEncoder(), **kw)
    tokens = load_text_file(path, representation="tokens", **kw)
    _assert_same(tokens, text_token_dataset(feats, "minilm"))
    assert tokens.name == "intents-tokens" and len(tokens.y_train) == 9


def test_run_refuses_token_ids_for_a_feature_method(tmp_path):
    rows = [{"text": f"{w} please, number {i}", "label": w} for i in range(6) for w in ("pay", "fly", "rain", "sun")]
    path = tmp_path / "intents.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tokens = load_text_file(path, representation="tokens", test_fraction=0.5, seed=3)
    stream = class_incremental(tokens, tasks=2, seed=0)
    with pytest.raises(DataError, match="token ids.*ncm reads feature vectors.*representation='features'"):
        run(stream, make_learner("ncm"), progress=False)


@needs_clinc
def test_tokens_never_run_the_sentence_encoder(monkeypatch, tmp_path):
    _no_encoding(monkeypatch)
    d = load_clinc150(data_root=CLINC, domains="0,1", max_per_class=5, representation="tokens", oos="class")
    assert d.num_classes == 31 and len(d.y_train) == 155  # 2 domains x 15 intents + oos, 5 each
    with pytest.raises(AssertionError, match="encoder ran"):  # the guard itself works
        load_clinc150(data_root=CLINC, domains=[0], max_per_class=5, cache_dir=tmp_path)
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"hello {i},{i % 2}\n" for i in range(8)))
    assert load_text_file(path, representation="tokens").x_train.shape[0] == 6


def test_bad_representation_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"representation must be one of \('features', 'tokens'\).*'ids'"):
        load_clinc150(data_root=tmp_path, download=False, representation="ids")
    with pytest.raises(ConfigError, match="representation must be one of"):
        load_text_file(tmp_path / "missing.csv", representation="token")
    with pytest.raises(ConfigError, match="max_length must be an integer >= 2"):
        load_clinc150(data_root=tmp_path, download=False, representation="tokens", max_length=1)
    with pytest.raises(ConfigError, match="oos='exclude'"):
        load_clinc150(data_root=tmp_path, download=False, representation="tokens", oos="features")
    with pytest.raises(ConfigError, match="tokenizer of the encoder"):
        load_clinc150(data_root=tmp_path, download=False, representation="tokens", encoder=HashEncoder())


# ---- end to end: the command line -----------------------------------------------------------------
@needs_clinc
def test_cli_runs_lora_seq_with_minilm_on_clinc150_tokens(tmp_path, capsys):
    rc = main(
        [
            "run",
            "--data",
            "clinc150",
            "--data-root",
            CLINC,
            "--set",
            "data.representation=tokens",
            "--set",
            "data.domains=0,1",
            "--set",
            "data.max_per_class=5",
            "--methods",
            "lora-seq",
            "--set",
            "method.backbone=minilm",
            "--set",
            "method.epochs=1",
            "--set",
            "method.lr=0.01",
            "--set",
            "method.batch_size=16",
            "--tasks",
            "2",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = json.loads(
        (tmp_path / "default" / "class-incremental-clinc150" / "lora-seq" / "seed0" / "results.json").read_text()
    )
    R = np.asarray(res["accuracy_matrix"])
    assert res["status"] == "complete" and R.shape == (2, 2) and res["config"]["backbone"] == "minilm"
    assert R[0, 0] > 0.3 and R[1, 1] > 0.3  # one epoch inside MiniLM learns each domain's 15 intents (chance 1/15)


@needs_clinc
def test_cli_refuses_mismatched_inputs_with_one_message(monkeypatch, tmp_path, capsys):
    _no_encoding(monkeypatch)  # refused before any feature is encoded
    base = [
        "run",
        "--data",
        "clinc150",
        "--data-root",
        CLINC,
        "--set",
        "data.domains=0,1",
        "--set",
        "data.max_per_class=5",
        "--tasks",
        "2",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main([*base, "--methods", "ncm,simplecil,er", "--set", "data.representation=tokens"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ncm, simplecil, er read feature vectors" in err[0]
    assert "drop --set data.representation=tokens" in err[0]
    assert main([*base, "--methods", "lora-seq,codyra", "--set", "method.backbone=minilm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lora-seq (backbone=minilm), codyra (backbone=minilm) read token ids" in err[0]
    assert "--set data.representation=tokens" in err[0] and "method.backbone=mlp" in err[0]
    assert not (tmp_path / "default").exists()  # nothing written


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory):
    """A 1-layer, 8-wide BERT with a 10-word vocabulary: a text backbone that loads instantly."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "book", "a", "flight", "pay", "bill"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(words),
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=64,
        )
    ).save_pretrained(str(folder))
    return str(folder)


@needs_clinc
def test_python_api_names_the_fix(tiny_text_model, tmp_path):
    feats = load_clinc150(data_root=CLINC, domains=[0, 1], max_per_class=3, encoder=HashEncoder(), cache_dir=tmp_path)
    text = make_learner("lora-seq", {"backbone": tiny_text_model, "epochs": 1})
    with pytest.raises(DataError, match="representation='tokens'.*backbone=mlp"):
        run(class_incremental(feats, tasks=2, seed=0), text, progress=False)
    tokens = load_clinc150(data_root=CLINC, domains=[0, 1], max_per_class=3, representation="tokens")
    with pytest.raises(
        DataError,
        match=r"lora-seq \(backbone=mlp\) reads feature vectors.*load the data with "
        r"representation='features'.*reads token ids: aper, coda-prompt, codyra with backbone=minilm, "
        r"dualprompt, l2p, lora-seq with backbone=minilm, slca$",
    ):
        run(class_incremental(tokens, tasks=2, seed=0), make_learner("lora-seq", {"epochs": 1}), progress=False)
    tiny = {"backbone": tiny_text_model, "rank": 4, "epochs": 1}
    with pytest.raises(DataError, match="outside the vocabulary"):  # minilm's ids in the tiny model
        run(class_incremental(tokens, tasks=2, seed=0), make_learner("codyra", tiny), progress=False)
    own = load_clinc150(
        data_root=CLINC, domains=[0, 1], max_per_class=3, representation="tokens", encoder=tiny_text_model
    )  # the tiny model's own tokenizer: fine
    res = run(class_incremental(own, tasks=2, seed=0), make_learner("codyra", tiny), progress=False)
    assert res.status == "complete"
