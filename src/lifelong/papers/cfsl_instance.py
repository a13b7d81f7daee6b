"""Seed paper 9: *Expanding continual few-shot learning benchmarks to include recognition of specific
instances* (Kowadlo, Ahmed, Mayan & Rawlinson, PLOS ONE 2024).

Claims (catalogue): (a) accuracy falls as the number of classes N_C grows (ProtoNet,
class test); (b) replay adds >= 10 points to Pretrain+Tune on the instance test;
(c) instance accuracy falls monotonically with the occlusion level.

Setup: (a) class test on procedural glyphs (:func:`lifelong.scenarios.cfsl.make_glyphs`),
5-way 5-shot support sets, N_C in {10, 50} (quick) or {10, 50, 100} (full);
(b, c) instance test on scikit-learn digits images: N_C instances (20 quick, 50 full),
5 per support set, queries under occlusion (fraction of pixels zeroed) + Gaussian noise
std 0.1; (b) at occlusion 0.25, (c) over occlusion {0, 0.1, 0.25, 0.5} with
Pretrain+Tune + replay. Quick: seed 0; full: seeds 0, 1, 2 (means reported).
Departures: no pre-training / meta-training (see :mod:`lifelong.methods.cfsl`),
glyphs instead of Omniglot, 8x8 digits instead of Omniglot/ROAD images.
Run ``lifelong reproduce cfsl-instance``.
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper

MARGIN = 0.10
OCCLUSIONS = (0.0, 0.1, 0.25, 0.5)
TUNE = {"learner": "tune"}
REPLAY = {"learner": "tune", "replay": True}
PROTO = {"learner": "protonet"}
#: the quick scale's smaller network (seconds on a shared CPU); full uses the method defaults
QUICK_NET = {"hidden": (64,), "epochs": 10}


def query_acc(stream, config: dict, seed: int) -> float:
    """CFSL query accuracy over all classes after the last support set, for one ``cfsl`` config."""
    from lifelong.evaluation import run
    from lifelong.methods import make_learner
    from lifelong.scenarios.cfsl import query_accuracy

    result = run(stream, make_learner("cfsl", config, seed=seed), seed=seed, progress=False)
    return query_accuracy(result.accuracy_matrix, stream.describe()["test_sizes"])


def class_test(n_classes: int, seed: int, config: dict = PROTO) -> float:
    """Class-test query accuracy on ``n_classes`` glyph classes (5-way 5-shot support sets)."""
    from lifelong.scenarios.cfsl import cfsl, make_glyphs

    data = make_glyphs(num_classes=n_classes, per_class=20, seed=seed)
    return query_acc(cfsl(data, classes=n_classes, ways=5, shots=5, seed=seed), config, seed)


def instance_test(n_instances: int, occlusion: float, seed: int, config: dict) -> float:
    """Instance-test query accuracy: ``n_instances`` digits images, 5 per support set, 10 queries each."""
    from lifelong.data import load_digits
    from lifelong.scenarios.cfsl import cfsl

    stream = cfsl(load_digits(), classes=n_instances, ways=5, instance=True, queries=10,
                  occlusion=occlusion, noise=0.1, seed=seed)
    return query_acc(stream, config, seed)


def reproduce(scale: str = "quick") -> Claim:
    """Measure claims (a)-(c) of the CFSL instance-test paper (see the module docstring)."""
    quick = scale == "quick"
    seeds = (0,) if quick else (0, 1, 2)
    ncs = (10, 50) if quick else (10, 50, 100)
    n_inst = 20 if quick else 50
    occlusions = (0.0, 0.25, 0.5) if quick else OCCLUSIONS
    net = QUICK_NET if quick else {}
    tune_cfg, replay_cfg = {**TUNE, **net}, {**REPLAY, **net}
    m: dict = {"seeds": len(seeds)}
    cls = {n: float(np.mean([class_test(n, s) for s in seeds])) for n in ncs}
    for n, v in cls.items():
        m[f"class_test/protonet/N_C={n}"] = round(v, 4)
    tune = float(np.mean([instance_test(n_inst, 0.25, s, tune_cfg) for s in seeds]))
    rep = float(np.mean([instance_test(n_inst, 0.25, s, replay_cfg) for s in seeds]))
    proto = float(np.mean([instance_test(n_inst, 0.25, s, PROTO) for s in seeds]))
    m.update({"instance_test/tune": round(tune, 4), "instance_test/tune+replay": round(rep, 4),
              "instance_test/protonet": round(proto, 4), "instance_test/replay_gain": round(rep - tune, 4)})
    occ = [rep if o == 0.25 else float(np.mean([instance_test(n_inst, o, s, replay_cfg) for s in seeds]))
           for o in occlusions]
    for o, v in zip(occlusions, occ):
        m[f"instance_test/tune+replay/occlusion={o}"] = round(v, 4)
    a = cls[ncs[-1]] < cls[ncs[0]]
    b = rep - tune >= MARGIN
    c = all(occ[i + 1] < occ[i] for i in range(len(occ) - 1))
    m.update({"a_held": a, "b_held": b, "c_held": c})
    return Claim(
        paper=PAPER.short_name,
        statement=("CFSL accuracy falls as the number of classes grows; on the instance test replay helps "
                   "Pretrain+Tune by a large margin; instance accuracy falls with occlusion"),
        criterion=(f"({len(seeds)} seed(s)) (a) ProtoNet class-test accuracy at N_C={ncs[-1]} < at N_C={ncs[0]} "
                   f"(glyphs, 5-way 5-shot); (b) Tune+replay >= Tune + {MARGIN * 100:.0f} points on the instance "
                   f"test ({n_inst} digits instances, occlusion 0.25, noise 0.1); (c) Tune+replay instance accuracy "
                   f"strictly decreasing over occlusion {list(occlusions)}"),
        measured=m,
        held=bool(a and b and c),
        scale=scale,
        notes=("Pretrain+Tune without pre-training (random-init MLP trained by SGD on each support set); ProtoNet on "
               "raw pixels (no meta-training); procedural glyphs instead of Omniglot; 8x8 digits as instances"),
    )


PAPER = Paper(
    number=9,
    short_name="cfsl-instance",
    title="Expanding continual few-shot learning benchmarks to include recognition of specific instances",
    category="continual benchmark",
    status="claim checked",
    implemented_by=("lifelong.scenarios.cfsl", "lifelong.methods.cfsl"),
    arxiv="",
    reproduce=reproduce,
)
