"""Paper 9: *Expanding continual few-shot learning benchmarks to include recognition of specific instances*
(Kowadlo, Ahmed, Mayan & Rawlinson, PLOS ONE 2024; arXiv 2209.07863).

Claims: (a) ProtoNet class-test accuracy falls as the number of classes grows; (b) replay adds a
margin to Pretrain+Tune on the instance test; (c) instance accuracy falls with occlusion. As in the
paper, the Tune network is pre-trained and the ProtoNet embedding meta-trained on background classes
disjoint from the stream's (:meth:`lifelong.methods.cfsl.CFSL.pretrain`); the Tune arms' learning rate
is picked on validation instances; every verdict is paired per seed.
Setting: :mod:`lifelong.scenarios.cfsl` (glyphs for the class test, digits images as instances),
learners :mod:`lifelong.methods.cfsl`; protocol in ``specs/cfsl-instance.toml``.
Run ``lifelong reproduce cfsl-instance``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def query_acc(stream, config: dict, seed: int, background: tuple | None = None) -> float:
    """CFSL query accuracy over all classes after the last support set, for one ``cfsl`` config.

    With ``background = (x, y)`` the learner is pre-trained / meta-trained on it first.
    """
    from lifelong.evaluation.loop import accuracy
    from lifelong.methods import make_learner
    from lifelong.scenarios.cfsl import query_accuracy

    learner = make_learner("cfsl", config, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        learner.prepare(stream[0].input_shape, stream.num_classes)
        if background is not None:
            learner.pretrain(*background)
        for e in stream:
            learner.learn(e)
        tests = [e.test_tensors() for e in stream]
        last = [accuracy(learner, x, y, None, stream.num_classes) for x, y in tests]
    return query_accuracy(np.array([last]), [len(y) for _, y in tests])


def glyph_background(n_classes: int, seed: int, per_class: int = 20) -> tuple:
    """Background (meta-training) glyph classes: a generator seed of their own, so templates differ from
    the stream's; both splits are used."""
    from lifelong.scenarios.cfsl import make_glyphs

    d = make_glyphs(num_classes=n_classes, per_class=per_class, seed=10_000 + seed)
    return torch.cat([d.x_train, d.x_test]), torch.cat([d.y_train, d.y_test])


def class_test(
    n_classes: int,
    seed: int,
    config: dict,
    per_class: int = 20,
    ways: int = 5,
    shots: int = 5,
    background: tuple | None = None,
    repeats: int = 1,
) -> float:
    """Class-test query accuracy on ``n_classes`` glyph classes (``ways``-way ``shots``-shot support sets)."""
    from lifelong.scenarios.cfsl import cfsl, make_glyphs

    data = make_glyphs(num_classes=n_classes, per_class=per_class, seed=seed)
    stream = cfsl(data, classes=n_classes, ways=ways, shots=shots, seed=seed, repeats=repeats)
    return query_acc(stream, config, seed, background)


def digits_pools(n_instances: int, seed: int) -> dict:
    """Disjoint digits training images: ``test`` and ``val`` instance pools (``n_instances`` each) as datasets,
    and ``background`` = the rest with their digit labels (pre-training / meta-training data)."""
    from lifelong.data import load_digits

    data = load_digits()
    n = len(data.y_train)
    if 2 * n_instances >= n:
        raise ValueError(f"{2 * n_instances} instances leave no background images out of {n}")
    perm = torch.as_tensor(np.random.default_rng([abs(int(seed)), 4242]).permutation(n))
    pools = {"test": perm[:n_instances], "val": perm[n_instances : 2 * n_instances]}
    out = {k: dataclasses.replace(data, x_train=data.x_train[i], y_train=data.y_train[i]) for k, i in pools.items()}
    rest = perm[2 * n_instances :]
    out["background"] = (data.x_train[rest], data.y_train[rest])
    return out


def instance_test(
    pool,
    occlusion: float,
    seed: int,
    config: dict,
    ways: int = 5,
    queries: int = 10,
    noise: float = 0.1,
    background: tuple | None = None,
    repeats: int = 1,
) -> float:
    """Instance-test query accuracy: every image of ``pool`` is an instance, ``ways`` per support set."""
    from lifelong.scenarios.cfsl import cfsl

    stream = cfsl(
        pool,
        classes=len(pool.y_train),
        ways=ways,
        instance=True,
        queries=queries,
        occlusion=occlusion,
        noise=noise,
        seed=seed,
        repeats=repeats,
    )
    return query_acc(stream, config, seed, background)


def reproduce(scale: str = "quick") -> Claim:
    """Measure claims (a)-(c) at ``scale`` (settings from ``specs/cfsl-instance.toml``)."""
    return check(load_spec("cfsl-instance", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Measure claims (a)-(c) of the CFSL instance-test paper with ``settings``."""
    from lifelong.papers.common import log_row, paired, paired_measured, pick_on_validation

    seeds, ncs, n_inst = settings["seeds"], settings["class_counts"], settings["instances"]
    occlusions, margin = settings["occlusions"], settings["margin"]
    ct, it, arms, net = settings["class_test"], settings["instance_test"], settings["arms"], settings["net"]
    proto = {**arms["protonet"], **net, **settings["meta"]}
    tune_cfg = {**arms["tune"], **net, **settings["pretrain"]}
    replay_cfg = {**arms["replay"], **net, **settings["pretrain"]}
    occ_b, grid = it["occlusion"], list(settings["lr_grid"])
    if occ_b not in occlusions:
        from lifelong.errors import ConfigError

        raise ConfigError(f"instance_test.occlusion={occ_b} must be one of occlusions={list(occlusions)}")

    def inst(pool, occlusion, seed, config, bg, repeats=1):
        return instance_test(
            pool, occlusion, seed, config, it["ways"], it["queries"], it["noise"], background=bg, repeats=repeats
        )

    # Tune arms' lr: the grid value with the best query accuracy on validation instances (disjoint from the
    # test instances and from the background) of the first seed, with the same pre-training
    tune_seed = seeds[0]
    vp = digits_pools(n_inst, tune_seed)
    lrs, val_scores = {}, {}
    for name, cfg in (("tune", tune_cfg), ("tune+replay", replay_cfg)):
        lrs[name], sc = pick_on_validation(
            grid, lambda lr, cfg=cfg: inst(vp["val"], occ_b, tune_seed, {**cfg, "lr": lr}, vp["background"])
        )
        val_scores[name] = {f"{lr:g}": round(v, 4) for lr, v in sc.items()}
    tune_cfg, replay_cfg = {**tune_cfg, "lr": lrs["tune"]}, {**replay_cfg, "lr": lrs["tune+replay"]}
    raw = {"pretrain_epochs": 0, "meta_episodes": 0}

    per: dict = {}

    def add(key, value):
        per.setdefault(key, []).append(value)

    for seed in seeds:
        gbg = glyph_background(ct["background_classes"], seed, ct["per_class"])
        for n in ncs:
            add(
                f"class_test/protonet/N_C={n}",
                class_test(n, seed, proto, ct["per_class"], ct["ways"], ct["shots"], gbg),
            )
        n0 = ncs[0]
        add(f"class_test/protonet_raw_pixels/N_C={n0}", class_test(n0, seed, {**proto, **raw}, *_ct(ct)))
        add(f"class_test/protonet_raw_pixels/N_C={ncs[-1]}", class_test(ncs[-1], seed, {**proto, **raw}, *_ct(ct)))
        add(
            f"class_test/protonet/N_C={n0}/repeats={ct['repeats']}",
            class_test(n0, seed, proto, *_ct(ct), background=gbg, repeats=ct["repeats"]),
        )
        pools = digits_pools(n_inst, seed)
        pool, bg = pools["test"], pools["background"]
        for o in occlusions:
            add(f"instance_test/tune+replay/occlusion={o}", inst(pool, o, seed, replay_cfg, bg))
        add("instance_test/tune+replay", per[f"instance_test/tune+replay/occlusion={occ_b}"][-1])
        add("instance_test/tune", inst(pool, occ_b, seed, tune_cfg, bg))
        add("instance_test/protonet", inst(pool, occ_b, seed, proto, bg))
        add("instance_test/protonet_raw_pixels", inst(pool, occ_b, seed, {**proto, **raw}, None))
        add("instance_test/tune_no_pretrain", inst(pool, occ_b, seed, {**tune_cfg, **raw}, None))
        add("instance_test/tune+replay_no_pretrain", inst(pool, occ_b, seed, {**replay_cfg, **raw}, None))
        add(
            f"instance_test/tune/repeats={it['repeats']}",
            inst(pool, occ_b, seed, tune_cfg, bg, repeats=it["repeats"]),
        )
        log_row("cfsl-instance", scale=scale, seed=seed, **{k: v[-1] for k, v in per.items()})

    m: dict = {"seeds": len(seeds)}
    for k, v in per.items():
        m[k] = round(float(np.mean(v)), 4)
    m["lr_chosen"] = lrs
    m["validation_query_acc_by_lr"] = val_scores
    pa = paired(per[f"class_test/protonet/N_C={ncs[0]}"], per[f"class_test/protonet/N_C={ncs[-1]}"], 0.0)
    pb = paired(per["instance_test/tune+replay"], per["instance_test/tune"], margin)
    pcs = [
        paired(per[f"instance_test/tune+replay/occlusion={o1}"], per[f"instance_test/tune+replay/occlusion={o2}"], 0.0)
        for o1, o2 in zip(occlusions[:-1], occlusions[1:])
    ]
    m.update(paired_measured(f"a/N_C={ncs[0]}_minus_N_C={ncs[-1]}", pa))
    m.update(paired_measured("b/replay_gain", pb))
    for (o1, o2), p in zip(zip(occlusions[:-1], occlusions[1:]), pcs):
        m.update(paired_measured(f"c/occlusion={o1}_minus_{o2}", p))
    m["instance_test/replay_gain"] = round(m["instance_test/tune+replay"] - m["instance_test/tune"], 4)
    a, b, c = pa["held"], pb["held"], all(p["held"] for p in pcs)
    m.update({"a_held": a, "b_held": b, "c_held": c})
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "CFSL accuracy falls as the number of classes grows; on the instance test replay helps "
            "Pretrain+Tune by a large margin; instance accuracy falls with occlusion"
        ),
        criterion=(
            f"({len(seeds)} seed(s), paired per seed: mean >= margin and, with >= 2 seeds, the 95 % interval "
            f"above 0) (a) meta-trained ProtoNet class-test accuracy at N_C={ncs[0]} - at N_C={ncs[-1]} > 0 "
            f"(glyphs, {ct['ways']}-way {ct['shots']}-shot); (b) pre-trained Tune+replay - Tune >= "
            f"{margin * 100:.0f} points on the instance test ({n_inst} digits instances, occlusion {occ_b}, "
            f"noise {it['noise']}), each arm's lr picked on validation instances from {grid}; (c) Tune+replay "
            f"instance accuracy falls at every step of occlusion {list(occlusions)}"
        ),
        measured=m,
        held=bool(a and b and c),
        scale=scale,
        notes=(
            f"Tune network pre-trained ({settings['pretrain']['pretrain_epochs']} epochs, cross-entropy) and "
            f"ProtoNet embedding meta-trained ({settings['meta']['meta_episodes']} episodes) on background "
            f"classes disjoint from the stream: {ct['background_classes']} glyph classes of another generator "
            "seed (class test), the digits training images that are not instances, with their digit labels "
            "(instance test); procedural glyphs instead of Omniglot; 8x8 digits as instances; MLP instead of "
            "a CNN; *_raw_pixels / *_no_pretrain = the earlier untrained versions; repeats = the class-repeat "
            "knob (each group of classes presented in that many consecutive sets)"
        ),
    )


def _ct(ct: dict) -> tuple:
    return ct["per_class"], ct["ways"], ct["shots"]


PAPER = Paper(
    number=9,
    short_name="cfsl-instance",
    title="Expanding continual few-shot learning benchmarks to include recognition of specific instances",
    category="continual benchmark",
    status="claim checked",
    implemented_by=("lifelong.scenarios.cfsl", "lifelong.methods.cfsl"),
    arxiv="2209.07863",
    reproduce=reproduce,
)
