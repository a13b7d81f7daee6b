"""Defaults that follow the data: a method's config resolves per data kind, and a run records what it used."""

import json

import pytest
import torch

from lifelong.cli import main
from lifelong.data import DATASETS, Dataset, dataset_kind, load_digits, loader_kind, make_blobs, register_dataset
from lifelong.data.kinds import LOADER_KINDS
from lifelong.errors import ConfigError
from lifelong.methods import get_method, make_learner
from lifelong.methods.base import GradientConfig
from lifelong.methods.config import build_config, config_fields, defaults_for_data
from lifelong.runner import run_experiment
from lifelong.scenarios import domain_incremental


def test_loader_kinds():
    assert loader_kind("mnist") == "pixels" and loader_kind("digits") == "pixels"
    assert loader_kind("clinc150") == "embeddings"
    assert loader_kind("clinc150", {"representation": "tokens"}) == "tokens"
    assert loader_kind("text-file", {"path": "x.csv"}) == "embeddings"
    assert loader_kind("blobs") == "vectors"
    with pytest.raises(ConfigError, match="unknown data kind"):
        register_dataset("zz-bad", make_blobs, kind="pictures")
    assert "zz-bad" not in DATASETS


def test_dataset_kind_from_loaded_data():
    assert dataset_kind(load_digits()) == "pixels"
    assert dataset_kind(make_blobs(num_classes=2, per_class=5, dim=3)) == "vectors"


def test_embeddings_change_gradient_defaults_and_overrides_win():
    er = get_method("er").config_class
    plain = build_config(er)
    emb = build_config(er, data_kind="embeddings")
    assert (plain.hidden, plain.lr) == ((256, 256), 0.01)  # no data kind: the field defaults
    assert (emb.hidden, emb.lr) == ((), 1.0)
    assert build_config(er, {"lr": 0.05}, data_kind="embeddings").lr == 0.05  # an explicit setting wins
    pix = build_config(er, data_kind="pixels")
    assert (pix.hidden, pix.lr) == ((256, 256), 0.05)
    assert build_config(er, data_kind="vectors") == plain  # no table for plain vectors
    assert make_learner("er", data_kind="embeddings").config.lr == 1.0
    with pytest.raises(ConfigError, match="unknown data kind"):
        build_config(er, data_kind="pictures")
    shown = {f["name"]: f for f in config_fields(er, "embeddings")}
    assert shown["lr"]["default"] == 1.0 and shown["lr"]["from_data"] and not shown["epochs"]["from_data"]


def test_a_data_default_naming_no_field_is_refused():
    class Bad(GradientConfig):
        data_defaults = {"embeddings": {"no_such_key": 1}}

    with pytest.raises(ConfigError, match="no_such_key"):
        defaults_for_data(Bad, "embeddings")


@pytest.fixture
def unit_norm_data():
    """Normalised blobs registered as an embeddings dataset (a stand-in for sentence features)."""
    base = make_blobs(num_classes=4, per_class=30, dim=16, seed=0)

    def load(**_):
        def unit(x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(torch.as_tensor(x), dim=1)

        return Dataset("unit", unit(base.x_train), base.y_train, unit(base.x_test), base.y_test, base.class_names)

    register_dataset("zz-unit", load, kind="embeddings")
    yield "zz-unit"
    DATASETS.pop("zz-unit")
    LOADER_KINDS.pop("zz-unit")


def test_a_run_resolves_defaults_once_and_records_them(tmp_path, unit_norm_data):
    run_experiment(
        data=unit_norm_data,
        methods=["er"],
        out=tmp_path,
        name="e",
        progress=False,
        report=False,
        overrides={"er": {"epochs": 1}},
        scenario_kwargs={"tasks": 2},
    )
    inv = json.loads((tmp_path / "e" / "experiment.json").read_text())
    cfg = json.loads(
        (tmp_path / "e" / f"class-incremental-{unit_norm_data}" / "er" / "seed0" / "config.json").read_text()
    )
    assert inv["data_kind"] == cfg["data_kind"] == "embeddings"
    assert cfg["config"]["lr"] == 1.0 and cfg["config"]["hidden"] == [] and cfg["config"]["epochs"] == 1


def test_show_prints_the_resolved_defaults(capsys):
    assert main(["show", "er", "--data", "clinc150"]) == 0
    out = capsys.readouterr().out
    lr = next(line for line in out.splitlines() if line.strip().startswith("*lr"))
    assert "1.0" in lr and "embeddings" in out
    assert main(["show", "er", "--data", "mnist"]) == 0
    marked = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if line.startswith(" *")]
    assert marked == ["*lr"]  # on pixels only the learning rate follows the data
    assert main(["show", "er", "--data", "blobs"]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines()[2:] if line.startswith(" *")]
    assert main(["show", "er", "--data", "nope"]) != 0


def test_domain_incremental_full_and_disjoint_shares():
    digits = load_digits()
    full = domain_incremental(digits, tasks=3)
    disjoint = domain_incremental(digits, tasks=3, share="disjoint")
    n = len(digits.y_train)
    assert all(len(e.train_idx) == n for e in full)
    sizes = [len(e.train_idx) for e in disjoint]
    assert sum(sizes) == n and len(set().union(*(set(e.train_idx.tolist()) for e in disjoint))) == n
    assert full.fingerprint() != disjoint.fingerprint()
    with pytest.raises(ConfigError, match="share"):
        domain_incremental(digits, tasks=3, share="half")
