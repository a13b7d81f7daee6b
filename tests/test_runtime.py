"""Thread and OpenMP wait-policy settings."""

import subprocess
import sys

import pytest

from lifelong.errors import ConfigError
from lifelong.runtime import resolve_threads


def test_resolve_threads(monkeypatch):
    monkeypatch.delenv("LIFELONG_THREADS", raising=False)
    assert resolve_threads() == 1
    monkeypatch.setenv("LIFELONG_THREADS", "2")
    assert resolve_threads() == 2
    assert resolve_threads(3) == 3
    with pytest.raises(ConfigError):
        resolve_threads(0)


def _child(code: str, env_policy: str | None = None) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy:
        env["OMP_WAIT_POLICY"] = env_policy
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()


def test_wait_policy_set_before_torch_and_user_value_wins():
    code = (
        "import os; from lifelong.runtime import configure_wait_policy as c; "
        "print(c(), os.environ.get('OMP_WAIT_POLICY'))"
    )
    assert _child(code) == "True PASSIVE"
    assert _child(code, env_policy="ACTIVE") == "True ACTIVE"
    late = "import torch, os; from lifelong.runtime import configure_wait_policy as c; print(c())"
    assert _child(late) == "False"


def test_importing_cli_does_not_import_torch():
    assert _child("import sys, lifelong.cli; print('torch' in sys.modules)") == "False"
