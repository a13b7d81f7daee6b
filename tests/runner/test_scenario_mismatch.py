"""A method built for another scenario gets one clear warning naming the scenario to use."""

from __future__ import annotations

import warnings

import pytest

from lifelong.cli import _show_lifelong_warnings
from lifelong.errors import ScenarioMismatchWarning
from lifelong.runner.experiment import warn_scenario_mismatch


def test_task_incremental_method_on_class_incremental_stream_warns():
    with pytest.warns(ScenarioMismatchWarning, match="--scenario task-incremental") as record:
        msgs = warn_scenario_mismatch(["er", "packnet", "hypernet"], "class-incremental")
    assert [m.split(" ")[0] for m in msgs] == ["packnet", "hypernet"]
    assert len(record) == 2


@pytest.mark.parametrize(
    ("method", "scenario"),
    [("packnet", "task-incremental"), ("er", "class-incremental"), ("er", "task-incremental"), ("ncm", "online")],
)
def test_no_warning_where_the_method_fits(method, scenario):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_scenario_mismatch([method], scenario) == []


def test_few_shot_method_names_its_scenario():
    with pytest.warns(ScenarioMismatchWarning, match="--scenario few-shot-incremental"):
        warn_scenario_mismatch(["fscil-tricks"], "class-incremental")


def test_cli_prints_library_warnings_as_one_line(capsys):
    saved = warnings.showwarning
    try:
        _show_lifelong_warnings()
        _show_lifelong_warnings()  # idempotent: not wrapped twice
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = warnings.showwarning  # keep the installed hook inside the context
            warn_scenario_mismatch(["packnet"], "class-incremental")
        err = capsys.readouterr().err
        assert err.startswith("lifelong: warning: packnet is built for the task-incremental scenario")
        assert err.count("lifelong: warning:") == 1
        assert "ScenarioMismatchWarning" not in err
    finally:
        warnings.showwarning = saved
