"""What a method reads (feature vectors or token ids) is declared on the method and checked in one place."""

import pytest

from lifelong.errors import ConfigError, DataError
from lifelong.methods import INPUT_KINDS, check_inputs, get_method, input_kind, list_methods, method_inputs
from lifelong.methods.config import build_config


def _config(name, **kw):
    return build_config(get_method(name).config_class, kw)


def test_every_method_declares_kinds_it_can_read():
    for name in list_methods():
        kinds = method_inputs(get_method(name))
        assert kinds and set(kinds) <= set(INPUT_KINDS), name
        assert input_kind(get_method(name), _config(name)) in kinds, name


def test_a_text_backbone_reads_token_ids_and_the_mlp_features():
    cls = get_method("lora-seq")
    assert input_kind(cls, _config("lora-seq")) == "features"
    assert input_kind(cls, _config("lora-seq", backbone="minilm")) == "tokens"
    assert input_kind(get_method("ncm"), _config("ncm")) == "features"


def test_the_message_names_the_misfits_and_the_methods_that_fit():
    fix = {"features": "load features", "tokens": "load tokens"}
    check_inputs("features", {"ncm": _config("ncm"), "lora-seq": _config("lora-seq")}, data_fix=fix)  # fine
    with pytest.raises(ConfigError) as e:
        check_inputs("tokens", {"ncm": _config("ncm"), "er": _config("er")}, data_fix=fix, set_prefix="--set method.")
    msg = str(e.value)
    assert msg.startswith("the data holds token ids, but ncm, er read feature vectors; load features")
    assert msg.endswith(
        "reads token ids: aper, coda-prompt, codyra with --set method.backbone=minilm, dualprompt, l2p, "
        "lora-seq with --set method.backbone=minilm, slca"
    )
    with pytest.raises(ConfigError, match=r"aper, slca read token ids; load tokens"):
        check_inputs("features", {"aper": _config("aper"), "slca": _config("slca")}, data_fix=fix)
    with pytest.raises(DataError, match=r"lora-seq \(backbone=minilm\) reads token ids; load tokens"):
        check_inputs("features", {"lora-seq": _config("lora-seq", backbone="minilm")}, data_fix=fix, error=DataError)
    with pytest.raises(ValueError, match="unknown input kind"):
        check_inputs("pixels", {}, data_fix=fix)
