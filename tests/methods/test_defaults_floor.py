"""The defaults floor: every method, run with its defaults on a small real dataset, gives a sensible result.

Each registered method is built with the defaults its data kind resolves (``make_learner(..., data_kind=...)``,
as ``lifelong run`` does) and run on scikit-learn's 8x8 digits in the scenario it is built for (the learner
class's ``scenario``). Its final average accuracy must reach ``FLOOR`` x the accuracy of the nearest-class-mean
learner on the same stream, or the method must refuse the data with one message naming why. The exceptions are
listed with their reason: methods expected to forget in a class-incremental stream (they must still learn the
last experience), and methods whose defaults are known to fall below the floor (strict xfail: the day one is
fixed, this test says so). The full matrix over every shipped dataset is ``benchmarks/defaults.py``.
"""

import pytest

from lifelong.data import load_digits
from lifelong.data.dataset import data_input_kind
from lifelong.data.kinds import dataset_kind
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.methods import check_inputs, get_method, list_methods, make_learner
from lifelong.methods.config import build_config
from lifelong.scenarios import make_scenario

FLOOR = 0.45  # of NCM's final average accuracy on the same stream

#: scenario -> its options on digits (10 classes)
SCENARIO_OPTIONS = {
    "class-incremental": {"tasks": 5},
    "task-incremental": {"tasks": 5},
    "few-shot-incremental": {"ways": 2, "shots": 5},
    "cfsl": {},
    "task-free": {"tasks": 5},
}

#: no replay and no protected head: in a class-incremental stream they keep only the last experience's classes
FORGETS = {
    "finetune": "no protection against forgetting (the lower bound)",
    "ewc": "regularisation only: the class-incremental head still favours the newest classes",
    "lwf": "regularisation only (distillation on new data)",
    "si": "regularisation only",
    "mas": "regularisation only",
    "agem": "gradient projection on a memory does not undo the head's bias to new classes in a class-incremental "
    "stream (close to fine-tuning there, as in van de Ven et al., arXiv 1904.07734)",
    "lora-seq": "one adapter per experience, no replay: sequential fine-tuning of adapters",
    "codyra": "one adapter per experience, no replay (its rank-selective sparsity keeps earlier adapters small)",
    "tent": "a test-time adapter over fine-tuning: it adapts normalisation, not against forgetting",
}

#: defaults measured below the floor on digits (final accuracy / NCM's): open defects, not exceptions
KNOWN_BELOW = {
    "prd": "35.2 % vs NCM 88.3 % with the pixel defaults (batch 32, 20 epochs): a replay-free MLP at this budget",
}


@pytest.fixture(scope="module")
def digits():
    return load_digits()


_NCM: dict = {}


def _stream(data, scenario):
    return make_scenario(scenario, data, seed=0, **SCENARIO_OPTIONS[scenario])


def _accuracy(name, stream, kind):
    learner = make_learner(name, seed=0, data_kind=kind)
    res = run(stream, learner, seed=0, method=name, config=learner.config.to_dict(), progress=False)
    return res


def _params():
    out = []
    for name in list_methods():
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BELOW[name])] if name in KNOWN_BELOW else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _params())
def test_defaults_reach_the_floor_or_refuse(name, digits):
    cls = get_method(name)
    kind = dataset_kind(digits)
    config = build_config(cls.config_class, data_kind=kind)
    try:
        check_inputs(data_input_kind(digits), {name: config}, data_fix={"features": "", "tokens": "load token ids"})
    except ConfigError as e:  # a method that cannot read pixels says so, naming what it reads
        assert "token ids" in str(e) and name in str(e)
        return
    scenario = getattr(cls, "scenario", "class-incremental")
    assert scenario in SCENARIO_OPTIONS, f"{name} is built for {scenario!r}: add its options on digits here"
    stream = _stream(digits, scenario)
    if scenario not in _NCM:
        _NCM[scenario] = _accuracy("ncm", stream, kind)
    ncm = _NCM[scenario]
    res = _accuracy(name, stream, kind)
    if name in FORGETS:
        # it must still learn: the last experience right after it is learned, near NCM's accuracy there
        assert res.accuracy_matrix[-1, -1] >= FLOOR * ncm.accuracy_matrix[-1, -1], FORGETS[name]
        return
    acc, ref = res.metrics["final_average_accuracy"], ncm.metrics["final_average_accuracy"]
    assert acc >= FLOOR * ref, f"{name} with its defaults: {acc:.3f} < {FLOOR} x NCM's {ref:.3f} on {scenario} digits"
