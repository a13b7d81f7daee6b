"""The defaults floor: every method, run with its defaults on small real datasets, gives a sensible result.

Each registered method is built with the defaults its data kind resolves (``make_learner(..., data_kind=...)``,
as ``lifelong run`` does) and run, in the scenario it is built for (the learner class's ``scenario``), on two
streams: scikit-learn's 8x8 digits (pixels) and a small CLINC150 stream of cached all-MiniLM-L6-v2 sentence
features (embeddings: 3 domains, 45 intents, 30 training sentences each, 3 experiences; skipped when
``LIFELONG_DATA`` lacks CLINC150). Its final average accuracy must reach ``FLOOR`` x the accuracy of the
nearest-class-mean learner on the same stream, or the method must refuse the data with one message naming why.
The exceptions are listed with their reason: methods expected to forget in a class-incremental stream (they
must still learn the last experience), and methods whose defaults are known to fall below the floor (strict
xfail: the day one is fixed, this test says so). The full matrix over every shipped dataset is
``benchmarks/defaults.py``.
"""

import pytest

from lifelong.data import load_dataset, load_digits
from lifelong.data.dataset import data_input_kind
from lifelong.data.kinds import dataset_kind
from lifelong.data.root import dataset_dir
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.methods import check_inputs, get_method, list_methods, make_learner
from lifelong.methods.config import build_config
from lifelong.scenarios import make_scenario

FLOOR = 0.45  # of NCM's final average accuracy on the same stream

#: dataset -> scenario -> its options there
SCENARIO_OPTIONS = {
    "digits": {  # 10 classes
        "class-incremental": {"tasks": 5},
        "task-incremental": {"tasks": 5},
        "few-shot-incremental": {"ways": 2, "shots": 5},
        "cfsl": {},
        "task-free": {"tasks": 5},
    },
    "clinc150": {  # 45 intents
        "class-incremental": {"tasks": 3},
        "task-incremental": {"tasks": 3},
        "few-shot-incremental": {"ways": 9, "shots": 5},  # 27 base intents + 2 sessions
        "cfsl": {},
        "task-free": {"tasks": 3},
    },
}
#: the small CLINC150 stream: 3 domains (45 intents), 30 sentences per intent in train and in test
CLINC_SMALL = {"domains": [0, 1, 2], "max_per_class": 30}

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

#: (dataset, method) -> why its defaults fall below the floor there: open defects, not exceptions
KNOWN_BELOW: dict[tuple[str, str], str] = {}


_DATA: dict = {}
_NCM: dict = {}


def _dataset(name):
    if name not in _DATA:
        if name == "digits":
            _DATA[name] = load_digits()
        else:
            if not (dataset_dir("clinc150", ["data_full.json"]) / "data_full.json").is_file():
                pytest.skip("CLINC150 is not under LIFELONG_DATA")
            _DATA[name] = load_dataset("clinc150", progress=False, **CLINC_SMALL)
    return _DATA[name]


def _accuracy(name, stream, kind):
    learner = make_learner(name, seed=0, data_kind=kind)
    return run(stream, learner, seed=0, method=name, config=learner.config.to_dict(), progress=False)


def _params():
    out = []
    for data in SCENARIO_OPTIONS:
        for name in list_methods():
            why = KNOWN_BELOW.get((data, name))
            marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
            out.append(pytest.param(data, name, marks=marks, id=f"{data}-{name}"))
    return out


@pytest.mark.parametrize(("data", "name"), _params())
def test_defaults_reach_the_floor_or_refuse(data, name):
    dataset = _dataset(data)
    cls = get_method(name)
    kind = dataset_kind(dataset)
    config = build_config(cls.config_class, data_kind=kind)
    try:
        check_inputs(data_input_kind(dataset), {name: config}, data_fix={"features": "", "tokens": "load token ids"})
    except ConfigError as e:  # a method that cannot read these inputs says so, naming what it reads
        assert "token ids" in str(e) and name in str(e)
        return
    scenario = getattr(cls, "scenario", "class-incremental")
    assert scenario in SCENARIO_OPTIONS[data], f"{name} is built for {scenario!r}: add its options on {data} here"
    if (data, scenario) not in _NCM:
        stream = make_scenario(scenario, dataset, seed=0, **SCENARIO_OPTIONS[data][scenario])
        _NCM[data, scenario] = stream, _accuracy("ncm", stream, kind)
    stream, ncm = _NCM[data, scenario]
    res = _accuracy(name, stream, kind)
    if name in FORGETS:
        # it must still learn: the last experience right after it is learned, near NCM's accuracy there
        assert res.accuracy_matrix[-1, -1] >= FLOOR * ncm.accuracy_matrix[-1, -1], FORGETS[name]
        return
    acc, ref = res.metrics["final_average_accuracy"], ncm.metrics["final_average_accuracy"]
    assert acc >= FLOOR * ref, f"{name} with its defaults: {acc:.3f} < {FLOOR} x NCM's {ref:.3f} on {scenario} {data}"
