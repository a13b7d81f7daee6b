"""``--set target.key=value`` overrides: parsed into per-method, scenario and data settings."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from lifelong.errors import ConfigError
from lifelong.methods import get_method


def parse_sets(items: Sequence[str], methods: Sequence[str]) -> tuple[dict[str, dict], dict, dict]:
    """Parse ``--set`` items into (per-method overrides, scenario kwargs, data kwargs).

    ``method.key=v`` sets ``key`` on every listed method that has it (an error if none
    has it); ``<method>.key=v`` on that method only; ``scenario.key=v`` and
    ``data.key=v`` are passed to the scenario and dataset functions. Values stay
    strings for method keys (parsed by each config) and are JSON-decoded when possible
    for scenario/data keys.
    """
    per_method: dict[str, dict] = {m: {} for m in methods}
    scenario_kw: dict = {}
    data_kw: dict = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set expects target.key=value (e.g. method.lr=0.1), got {item!r}")
        lhs, value = item.split("=", 1)
        target, key = lhs.split(".", 1)
        if target == "scenario":
            scenario_kw[key] = _json_or_str(value)
        elif target == "data":
            data_kw[key] = _json_or_str(value)
        elif target == "method":
            takers = [m for m in methods if key in _keys(m)]
            if not takers:
                raise ConfigError(f"no selected method has config key {key!r} (methods: {', '.join(methods)})")
            for m in takers:
                per_method[m][key] = value
        elif target in per_method:
            if key not in _keys(target):
                raise ConfigError(f"method {target!r} has no key {key!r}; valid keys: {', '.join(_keys(target))}")
            per_method[target][key] = value
        else:
            raise ConfigError(
                f"--set target {target!r} is neither 'method', 'scenario', 'data' nor a selected "
                f"method ({', '.join(methods)})"
            )
    return per_method, scenario_kw, data_kw


def _keys(method: str) -> list[str]:
    return [f.name for f in dataclasses.fields(get_method(method).config_class)]


def _json_or_str(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v
