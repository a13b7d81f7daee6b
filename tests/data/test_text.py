"""CLINC150 from the shared copy and the generic text-file loader."""

import collections
import json

import pytest
import torch

import lifelong.data.clinc150 as clinc150_mod
import lifelong.data.text as text_mod
from conftest import CLINC, HashEncoder, needs_clinc
from lifelong.data import load_dataset
from lifelong.data.clinc150 import load_clinc150, read_clinc150
from lifelong.data.textfile import load_text_file, read_text_file
from lifelong.errors import ConfigError, DataError
from lifelong.scenarios import class_incremental


@needs_clinc
def test_raw_clinc150_split_sizes_and_hierarchy():
    f = read_clinc150(CLINC)
    sizes = {k: len(v[0]) for k, v in f.splits.items()}
    assert sizes == {"train": 15000, "val": 3000, "test": 4500, "oos_train": 100, "oos_val": 100, "oos_test": 1000}
    assert len(f.domains) == 10 and all(len(v) == 15 for v in f.domains.values())
    assert list(f.domains)[:2] == ["banking", "credit_cards"]
    assert len(set(f.splits["train"][1])) == 150


@needs_clinc
def test_full_clinc150_class_ids_are_grouped_by_domain(tmp_path):
    d = load_clinc150(data_root=CLINC, encoder=HashEncoder(), cache_dir=tmp_path)
    assert d.num_classes == 150 and len(d.y_train) == 15000 and len(d.y_test) == 4500
    assert d.coarse_labels == [k for k in range(10) for _ in range(15)]
    assert len(d.meta["domain_names"]) == 10 and d.meta["domain_names"][-1] == "meta"
    assert d.class_names[:15] == read_clinc150(CLINC).domains["banking"]
    assert collections.Counter(d.y_train.tolist()) == {c: 100 for c in range(150)}
    assert torch.equal(d.domains_train, torch.tensor(d.coarse_labels)[d.y_train])
    assert len(d.meta["oos_texts"]["test"]) == 1000 and "oos" not in d.class_names
    stream = class_incremental(d, tasks=10, seed=-1)
    for k, e in enumerate(stream):
        _, y = e.train_tensors()
        assert {d.coarse_labels[c] for c in y.unique().tolist()} == {k} and len(e.classes) == 15
        assert d.meta["texts_train"][int(e.train_idx[0])] in read_clinc150(CLINC).splits["train"][0]


@needs_clinc
def test_clinc150_options(tmp_path):
    enc = HashEncoder()
    val = load_clinc150(data_root=CLINC, encoder=enc, cache_dir=tmp_path, eval_split="val", domains=["meta", 0])
    assert val.num_classes == 30 and len(val.y_test) == 30 * 20 and val.meta["domain_names"] == ["banking", "meta"]
    assert val.coarse_labels == [0] * 15 + [1] * 15
    oos = load_clinc150(data_root=CLINC, encoder=enc, cache_dir=tmp_path, domains=[1], oos="class")
    assert oos.class_names[-1] == "oos" and oos.num_classes == 16 and oos.coarse_labels[-1] == 1
    assert int((oos.y_train == 15).sum()) == 100 and int((oos.y_test == 15).sum()) == 1000
    feats = load_clinc150(
        data_root=CLINC, encoder=enc, cache_dir=tmp_path, domains=[2], oos="features", max_per_class=3
    )
    assert feats.meta["oos_features"]["test"].shape == (1000, 8) and len(feats.y_train) == 45
    with pytest.raises(ConfigError, match="unknown CLINC150 domain"):
        load_clinc150(data_root=CLINC, encoder=enc, cache_dir=tmp_path, domains=["cooking"])
    with pytest.raises(ConfigError, match="eval_split"):
        load_clinc150(data_root=CLINC, encoder=enc, cache_dir=tmp_path, eval_split="dev")


@needs_clinc
def test_subsets_reuse_the_cached_full_split(tmp_path):
    enc = HashEncoder()
    full = load_clinc150(data_root=CLINC, encoder=enc, cache_dir=tmp_path)
    calls = enc.calls
    sub = load_clinc150(data_root=CLINC, encoder=enc, cache_dir=tmp_path, domains=[3], max_per_class=4, seed=1)
    assert enc.calls == calls and sub.meta["feature_cache"]["hit"]
    assert sub.meta["feature_cache"]["splits"]["train"]["reason"] == "rows of the cached full split"
    rows = [full.meta["texts_train"].index(t) for t in sub.meta["texts_train"]]
    assert torch.equal(sub.x_train, full.x_train[rows])


@needs_clinc
def test_real_minilm_features_and_cache_hit_on_a_small_subset(tmp_path):
    kw = dict(data_root=CLINC, domains=[0, 1], max_per_class=4, cache_dir=tmp_path, threads=1)
    d = load_dataset("clinc150", **kw)
    assert d.x_train.shape == (120, 384) and d.x_train.dtype == torch.float32
    assert torch.allclose(d.x_train.norm(dim=1), torch.ones(120), atol=1e-4)
    fc = d.meta["feature_cache"]
    assert fc["hit"] is False and fc["encode_seconds"] > 0
    again = load_dataset("clinc150", **kw)
    assert again.meta["feature_cache"]["hit"] is True and torch.equal(again.x_train, d.x_train)
    assert again.meta["feature_cache"]["saved_seconds"] > 0
    # same-domain utterances are closer on average than cross-domain ones (the features carry meaning)
    sim = d.x_train @ d.x_train.T
    same = torch.tensor(d.coarse_labels)[d.y_train]
    mask = same[:, None] == same[None, :]
    assert sim[mask].mean() > sim[~mask].mean() + 0.05


def test_data_root_from_environment_and_subfolder(monkeypatch, tmp_path):
    folder = tmp_path / "clinc150"
    folder.mkdir()
    (folder / "data_full.json").write_text(
        json.dumps(
            {
                "train": [["hi", "greet"], ["bye", "leave"]] * 2,
                "val": [["hey", "greet"], ["ciao", "leave"]],
                "test": [["hello", "greet"], ["see you", "leave"]],
                "oos_train": [["what", "oos"]],
                "oos_val": [["why", "oos"]],
                "oos_test": [["how", "oos"]],
            }
        )
    )
    (folder / "domains.json").write_text(json.dumps({"social": ["greet", "leave"]}))
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path))
    d = load_clinc150(encoder=HashEncoder(), cache_dir=tmp_path / "cache")
    assert d.class_names == ["greet", "leave"] and d.meta["source"] == str(folder)


def test_missing_files_name_the_expected_layout(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        read_clinc150(tmp_path, download=False)
    msg = str(e.value)
    assert "data_full.json" in msg and "domains.json" in msg and "oos_test" in msg and "--data-root" in msg
    monkeypatch.setattr(clinc150_mod, "CLINC150_URL", "http://127.0.0.1:9/")  # nothing listens: offline
    with pytest.raises(DataError, match="download=False"):
        read_clinc150(tmp_path / "clinc150")  # downloads nothing unless asked
    assert not (tmp_path / "clinc150").exists()
    with pytest.raises(DataError, match="download .* failed"):
        read_clinc150(tmp_path / "clinc150", download=True)
    assert not (tmp_path / "clinc150").exists()  # a failed download leaves nothing behind


@pytest.mark.parametrize(
    "broken, message",
    [
        ("data_full.json", "data_full.json .* is not valid JSON"),
        ("domains.json", "domains.json .* is not valid JSON"),
    ],
)
def test_an_unreadable_clinc_file_is_named(tmp_path, broken, message):
    folder = tmp_path / "clinc150"
    folder.mkdir()
    (folder / "data_full.json").write_text(
        json.dumps({k: [] for k in ("train", "val", "test", "oos_train", "oos_val", "oos_test")})
    )
    (folder / "domains.json").write_text(json.dumps({"social": ["greet"]}))
    (folder / broken).write_text("{not json")
    with pytest.raises(DataError, match=message):
        read_clinc150(tmp_path)


def test_malformed_domains_json_names_that_file(tmp_path):
    folder = tmp_path / "clinc150"
    folder.mkdir()
    (folder / "data_full.json").write_text(
        json.dumps({k: [] for k in ("train", "val", "test", "oos_train", "oos_val", "oos_test")})
    )
    (folder / "domains.json").write_text(json.dumps({"social": "greet"}))  # a string, not a list of intents
    with pytest.raises(DataError, match="domains.json must be one JSON object mapping"):
        read_clinc150(tmp_path)


# ---- the generic loader ---------------------------------------------------------------------
def _csv(tmp_path, rows, name="intents.csv", header="text,label"):
    p = tmp_path / name
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return p


def test_csv_loader_with_stratified_split(tmp_path):
    rows = [f"play song {i},music" for i in range(10)] + [f"weather in city {i},weather" for i in range(10)]
    p = _csv(tmp_path, rows)
    d = load_text_file(p, encoder=HashEncoder(), cache_dir=tmp_path / "c", test_fraction=0.3)
    assert d.class_names == ["music", "weather"] and d.name == "intents"
    assert len(d.y_train) == 14 and len(d.y_test) == 6 and d.x_train.shape[1] == 8
    assert all(t.startswith("play") for t, y in zip(d.meta["texts_train"], d.y_train.tolist()) if y == 0)


def test_jsonl_loader_with_named_columns_coarse_groups_and_test_file(tmp_path):
    def write(name, rows):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows))
        return tmp_path / name

    rows = [
        {"utterance": f"u{i}", "intent": lab, "domain": dom}
        for i, (lab, dom) in enumerate([("b", "z"), ("a", "y"), ("c", "z"), ("b", "z")])
    ]
    train = write("train.jsonl", rows)
    test = write("test.jsonl", rows[:3])
    d = load_dataset(
        "text-file",
        path=str(train),
        test_path=str(test),
        text_column="utterance",
        label_column="intent",
        coarse_column="domain",
        encoder=HashEncoder(),
        cache_dir=str(tmp_path / "c"),
    )
    assert d.class_names == ["a", "b", "c"] and d.coarse_labels == [0, 1, 1]  # grouped: y -> {a}, z -> {b, c}
    assert d.meta["coarse_names"] == ["y", "z"] and len(d.y_test) == 3
    assert d.y_train.tolist() == [1, 0, 2, 1]


def test_integer_labels_sort_numerically_and_json_lists_work(tmp_path):
    p = tmp_path / "pairs.json"
    p.write_text(json.dumps({"train": [["a", 10], ["b", 2], ["c", 10], ["d", 2]]}))
    t = read_text_file(p, json_key="train")
    assert t.texts == ["a", "b", "c", "d"]
    d = load_text_file(p, json_key="train", encoder=HashEncoder(), cache_dir=tmp_path / "c", test_fraction=0.5)
    assert d.class_names == ["2", "10"]


def test_text_file_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_text_file(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="format"):
        read_text_file(tmp_path / "data.xlsx")
    p = _csv(tmp_path, ["hello,greet"], header="text,intent")
    with pytest.raises(DataError, match=r"no label column 'label'; columns found: text, intent"):
        read_text_file(p)
    p = _csv(tmp_path, ["hello,greet", "  ,greet"], name="empty.csv")
    with pytest.raises(DataError, match="row 2 has an empty text"):
        read_text_file(p)
    p = _csv(tmp_path, [], name="blank.csv")
    with pytest.raises(DataError, match="no rows"):
        read_text_file(p)
    p = tmp_path / "obj.json"
    p.write_text(json.dumps({"a": []}))
    with pytest.raises(DataError, match="json_key"):
        read_text_file(p)
    p = _csv(tmp_path, ["x,a", "y,b", "z,b"], name="single.csv")
    with pytest.raises(DataError, match="at least 2 rows"):
        load_text_file(p, encoder=HashEncoder(), cache_dir=False)


def test_labels_only_in_the_test_file_are_refused(tmp_path):
    train = _csv(tmp_path, ["play a song,music", "rain today,weather"], name="train.csv")
    test = _csv(tmp_path, ["next song,music", "book a taxi,travel"], name="test.csv")
    with pytest.raises(DataError, match=r"test.csv has 1 label\(s\) that never occur in .*train.csv: 'travel'"):
        load_text_file(train, test_path=test, encoder=HashEncoder(), cache_dir=False)


def test_unknown_format_is_named_and_partial_clinc_folder_is_the_one_named(tmp_path):
    p = _csv(tmp_path, ["a,b"])
    with pytest.raises(ConfigError, match="unknown text format 'xml'"):
        read_text_file(p, format="xml")
    (tmp_path / "data_full.json").write_text("{}")  # domains.json is the one missing, here in the root
    with pytest.raises(DataError, match=rf"expected {tmp_path / 'data_full.json'} .*missing: domains.json"):
        read_clinc150(tmp_path)


def test_feature_cache_files_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        p = _csv(tmp_path, ["play a song,music", "rain today,weather"] * 2)
        load_text_file(p, encoder=HashEncoder(), cache_dir=tmp_path / "cache", test_fraction=0.5)
    finally:
        os.umask(old)
    files = [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files)


def test_old_import_path_names_the_same_objects():
    from lifelong.data import DATASETS, encode, root, textfile, tokens
    from lifelong.methods import lora_seq

    homes = (clinc150_mod, textfile, tokens, encode, root)
    for name in text_mod.__all__:
        assert any(getattr(m, name, None) is getattr(text_mod, name) for m in homes), name
    assert lora_seq.text_token_dataset is tokens.text_token_dataset
    assert DATASETS["clinc150"] is text_mod.load_clinc150 and DATASETS["text-file"] is text_mod.load_text_file


def test_default_data_root_explicit_then_environment_then_cache(monkeypatch, tmp_path):
    from pathlib import Path

    from lifelong.data.root import default_data_root

    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "env"))
    assert default_data_root(tmp_path / "given") == tmp_path / "given"
    assert default_data_root() == tmp_path / "env"
    monkeypatch.delenv("LIFELONG_DATA")
    assert default_data_root() == Path.home() / ".cache" / "lifelong" / "data"
