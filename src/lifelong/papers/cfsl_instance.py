"""Paper 9: *Expanding continual few-shot learning benchmarks to include recognition of specific instances*
(Kowadlo, Ahmed, Mayan & Rawlinson, PLOS ONE 2024).

Claims: (a) ProtoNet class-test accuracy falls as the number of classes grows; (b) replay adds a
margin to Pretrain+Tune on the instance test; (c) instance accuracy falls with occlusion.
Setting: :mod:`lifelong.scenarios.cfsl` (glyphs for the class test, digits images as instances),
learners :mod:`lifelong.methods.cfsl`; protocol in ``specs/cfsl-instance.toml``.
Run ``lifelong reproduce cfsl-instance``.
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def query_acc(stream, config: dict, seed: int) -> float:
    """CFSL query accuracy over all classes after the last support set, for one ``cfsl`` config."""
    from lifelong.evaluation import run
    from lifelong.methods import make_learner
    from lifelong.scenarios.cfsl import query_accuracy

    result = run(stream, make_learner("cfsl", config, seed=seed), seed=seed, progress=False)
    return query_accuracy(result.accuracy_matrix, stream.describe()["test_sizes"])


def class_test(n_classes: int, seed: int, config: dict, per_class: int = 20, ways: int = 5, shots: int = 5) -> float:
    """Class-test query accuracy on ``n_classes`` glyph classes (``ways``-way ``shots``-shot support sets)."""
    from lifelong.scenarios.cfsl import cfsl, make_glyphs

    data = make_glyphs(num_classes=n_classes, per_class=per_class, seed=seed)
    return query_acc(cfsl(data, classes=n_classes, ways=ways, shots=shots, seed=seed), config, seed)


def instance_test(
    n_instances: int, occlusion: float, seed: int, config: dict, ways: int = 5, queries: int = 10, noise: float = 0.1
) -> float:
    """Instance-test query accuracy: ``n_instances`` digits images, ``ways`` per support set, ``queries`` each."""
    from lifelong.data import load_digits
    from lifelong.scenarios.cfsl import cfsl

    stream = cfsl(
        load_digits(),
        classes=n_instances,
        ways=ways,
        instance=True,
        queries=queries,
        occlusion=occlusion,
        noise=noise,
        seed=seed,
    )
    return query_acc(stream, config, seed)


def reproduce(scale: str = "quick") -> Claim:
    """Measure claims (a)-(c) at ``scale`` (settings from ``specs/cfsl-instance.toml``)."""
    return check(load_spec("cfsl-instance", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Measure claims (a)-(c) of the CFSL instance-test paper with ``settings``."""
    seeds, ncs, n_inst = settings["seeds"], settings["class_counts"], settings["instances"]
    occlusions, margin = settings["occlusions"], settings["margin"]
    ct, it, arms = settings["class_test"], settings["instance_test"], settings["arms"]
    tune_cfg, replay_cfg, proto = (
        {**arms["tune"], **settings["net"]},
        {**arms["replay"], **settings["net"]},
        arms["protonet"],
    )
    occ_b = it["occlusion"]

    def inst(occlusion, seed, config):
        return instance_test(n_inst, occlusion, seed, config, ways=it["ways"], queries=it["queries"], noise=it["noise"])

    m: dict = {"seeds": len(seeds)}
    cls = {
        n: float(np.mean([class_test(n, s, proto, ct["per_class"], ct["ways"], ct["shots"]) for s in seeds]))
        for n in ncs
    }
    for n, v in cls.items():
        m[f"class_test/protonet/N_C={n}"] = round(v, 4)
    tune = float(np.mean([inst(occ_b, s, tune_cfg) for s in seeds]))
    rep = float(np.mean([inst(occ_b, s, replay_cfg) for s in seeds]))
    proto_acc = float(np.mean([inst(occ_b, s, proto) for s in seeds]))
    m.update(
        {
            "instance_test/tune": round(tune, 4),
            "instance_test/tune+replay": round(rep, 4),
            "instance_test/protonet": round(proto_acc, 4),
            "instance_test/replay_gain": round(rep - tune, 4),
        }
    )
    occ = [rep if o == occ_b else float(np.mean([inst(o, s, replay_cfg) for s in seeds])) for o in occlusions]
    for o, v in zip(occlusions, occ):
        m[f"instance_test/tune+replay/occlusion={o}"] = round(v, 4)
    a = cls[ncs[-1]] < cls[ncs[0]]
    b = rep - tune >= margin
    c = all(occ[i + 1] < occ[i] for i in range(len(occ) - 1))
    m.update({"a_held": a, "b_held": b, "c_held": c})
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "CFSL accuracy falls as the number of classes grows; on the instance test replay helps "
            "Pretrain+Tune by a large margin; instance accuracy falls with occlusion"
        ),
        criterion=(
            f"({len(seeds)} seed(s)) (a) ProtoNet class-test accuracy at N_C={ncs[-1]} < at N_C={ncs[0]} "
            f"(glyphs, {ct['ways']}-way {ct['shots']}-shot); (b) Tune+replay >= Tune + {margin * 100:.0f} "
            f"points on the instance test ({n_inst} digits instances, occlusion {occ_b}, noise "
            f"{it['noise']}); (c) Tune+replay instance accuracy strictly decreasing over occlusion "
            f"{list(occlusions)}"
        ),
        measured=m,
        held=bool(a and b and c),
        scale=scale,
        notes=(
            "Pretrain+Tune without pre-training (random-init MLP trained by SGD on each support set); ProtoNet on "
            "raw pixels (no meta-training); procedural glyphs instead of Omniglot; 8x8 digits as instances"
        ),
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
