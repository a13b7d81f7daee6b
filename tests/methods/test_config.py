"""Method configs: parsing, defaults, unknown keys."""

import pytest

from lifelong.errors import ConfigError
from lifelong.methods import config_fields, get_method, list_methods, make_learner
from lifelong.methods.config import build_config
from lifelong.methods.er import ERConfig


def test_strings_parse_to_field_types():
    c = build_config(ERConfig, {"lr": "0.1", "buffer_size": "500", "hidden": "64,32", "reset_optimizer": "false"})
    assert c.lr == 0.1 and c.buffer_size == 500 and c.hidden == (64, 32) and c.reset_optimizer is False
    assert build_config(ERConfig, {"hidden": ""}).hidden == ()


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: .*buffer_size"):
        build_config(ERConfig, {"bufer_size": 3})


def test_bad_values():
    with pytest.raises(ConfigError, match="expects an integer"):
        build_config(ERConfig, {"buffer_size": "many"})
    with pytest.raises(ConfigError, match="'buffer_size' expects an integer, got True"):
        build_config(ERConfig, {"buffer_size": True})  # a bool is not a count
    for bad in ("inf", float("nan"), "-inf"):
        with pytest.raises(ConfigError, match="'lr' expects a finite number"):
            build_config(ERConfig, {"lr": bad})
    with pytest.raises(ConfigError, match="momentum and weight_decay must be >= 0"):
        build_config(ERConfig, {"momentum": "-3"})
    with pytest.raises(ConfigError):
        build_config(ERConfig, {"lr": "-1"})
    with pytest.raises(ConfigError):
        build_config(ERConfig, {"buffer": "fifo"})
    with pytest.raises(ConfigError, match="choose one of"):
        make_learner("nope")


@pytest.mark.parametrize("name", list_methods())
def test_every_field_has_help_and_round_trips(name):
    cls = get_method(name).config_class
    for f in config_fields(cls):
        assert f["help"], f"{name}.{f['name']} has no help text"
    cfg = build_config(cls, {})
    assert build_config(cls, cfg.to_dict()) == cfg


def test_optimizer_selectable_by_name():
    learner = make_learner("finetune", {"optimizer": "adam", "lr": "0.001"})
    learner.prepare((4,), 3)
    import torch

    assert isinstance(learner.optimizer, torch.optim.Adam)
    with pytest.raises(ConfigError, match="optimizer"):
        make_learner("finetune", {"optimizer": "nope"}).prepare((4,), 3)
