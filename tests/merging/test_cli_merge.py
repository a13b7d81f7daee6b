"""``lifelong merge``: safetensors in and out, the same tensors as the Python API, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lifelong.cli import main
from lifelong.merging import merge


def _write(tmp_path, seed: int, name: str, **extra) -> str:
    g = torch.Generator().manual_seed(seed)
    sd = {"a.weight": torch.randn(12, 20, generator=g), "a.bias": torch.randn(12, generator=g), **extra}
    path = tmp_path / name
    save_file(sd, str(path))
    return str(path)


def test_merge_writes_the_python_api_result(tmp_path, capsys):
    base = _write(tmp_path, 0, "base.safetensors", steps=torch.tensor([7]))
    a, b = _write(tmp_path, 1, "a.safetensors", steps=torch.tensor([9])), _write(tmp_path, 2, "b.safetensors")
    b_sd = load_file(b)
    b_sd["steps"] = torch.tensor([9])
    save_file(b_sd, b)
    out = tmp_path / "merged.safetensors"
    argv = ["merge", "--method", "breadcrumbs", "--base", base, "--experts", f"{a},{b}", "--out", str(out)]
    assert main(argv + ["--set", "density=0.3", "--set", "alpha=0.5"]) == 0
    assert "merged 2 experts with breadcrumbs" in capsys.readouterr().out
    got = load_file(str(out))
    expected = merge(load_file(base), [load_file(a), load_file(b)], "breadcrumbs", density=0.3, alpha=0.5)
    assert set(got) == set(expected)
    for k in got:
        torch.testing.assert_close(got[k], expected[k], atol=0, rtol=0)
    assert got["steps"].item() == 7  # integer tensors come from the base
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and json.loads(meta["lifelong_merge"])["config"]["density"] == 0.3
    # an existing output is kept unless --overwrite
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--method", "ties"]) == 0


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda p, a: ["--experts", a.replace("a.safetensors", "wrong.safetensors")], "does not have the base"),
        (lambda p, a: ["--experts", str(p / "model.bin")], "pickle checkpoint"),
        (lambda p, a: ["--experts", str(p / "none.safetensors")], "no file"),
        (lambda p, a: ["--experts", str(p / "junk.safetensors")], "not a readable safetensors"),
        (lambda p, a: ["--set", "beta=0.1"], "unknown setting 'beta'"),
        (lambda p, a: ["--method", "slerp"], "unknown merge method"),
        (lambda p, a: ["--weights", "1,x"], "--weights must be numbers"),
    ],
)
def test_bad_input_stops_with_one_message(tmp_path, capsys, change, message):
    base = _write(tmp_path, 0, "base.safetensors")
    a = _write(tmp_path, 1, "a.safetensors")
    save_file({"a.weight": torch.zeros(3, 3)}, str(tmp_path / "wrong.safetensors"))
    (tmp_path / "model.bin").write_bytes(b"\x80\x04not really")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    out = str(tmp_path / "m.safetensors")
    argv = ["merge", "--method", "breadcrumbs", "--base", base, "--experts", a, "--out", out]
    assert main(argv + change(tmp_path, a)) == 2
    err = capsys.readouterr().err
    assert err.startswith("lifelong: error:") and message in err
    assert not (tmp_path / "m.safetensors").exists()


def test_list_and_missing_arguments(capsys):
    assert main(["merge", "--list"]) == 0
    out = capsys.readouterr().out
    assert "breadcrumbs:" in out and "gamma = 0.006" in out
    assert main(["merge", "--method", "ties"]) == 2
    assert "needs --base, --experts, --out" in capsys.readouterr().err
