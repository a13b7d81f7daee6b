"""Paper 47: *Parameter-free Online Test-time Adaptation* (LAME; Boudiaf et al., CVPR 2022).

Claim: correcting a frozen classifier's outputs on each test batch with LAME costs (almost)
nothing on i.i.d. batches and helps on class-imbalanced, non-i.i.d. batches. :func:`check`
trains each inner classifier once, then streams the test set in i.i.d., Dirichlet and
class-sorted batches with and without LAME (:mod:`lifelong.methods.lame`); protocol in
``specs/lame.toml``. Run ``lifelong reproduce lame``.
"""

from __future__ import annotations

import json

import numpy as np

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def evaluate(
    learner, x, y, seeds=(0, 1, 2), batch_size: int = 32, alpha: float = 0.1, orders=("iid", "dirichlet", "sorted")
) -> dict:
    """Batch-by-batch accuracy of the inner learner and of LAME for each test order (mean over ``seeds``)."""
    from lifelong.methods.lame import batched_accuracy, tta_batches

    out = {}
    for order in orders:
        base, adapted = [], []
        for seed in seeds:
            batches = tta_batches(y.numpy(), batch_size, order, alpha=alpha, seed=seed)
            base.append(batched_accuracy(learner.inner.predict, x, y, batches))
            adapted.append(batched_accuracy(learner.predict, x, y, batches))
        out[order] = (float(np.mean(base)), float(np.mean(adapted)))
    return out


def reproduce(scale: str = "quick") -> Claim:
    """LAME vs no adaptation at ``scale`` (settings from ``specs/lame.toml``)."""
    return check(load_spec("lame", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """LAME vs no adaptation on i.i.d., Dirichlet and sorted test batches with ``settings``."""
    from lifelong.methods import make_learner
    from lifelong.papers.common import load_data
    from lifelong.scenarios import class_incremental

    stream = class_incremental(load_data(settings["data"]), tasks=1, seed=-1)
    x, y = stream[0].test_tensors()
    seeds, batch, alpha = settings["order_seeds"], settings["batch_size"], settings["alpha"]
    tol, gain = settings["iid_tolerance"], settings["noniid_gain"]
    measured: dict = {"order_seeds": len(seeds)}
    held = True
    for label, inner in settings["inners"].items():
        config = {"inner": inner["method"], "inner_config": json.dumps(inner["config"]), **settings["lame"]}
        learner = make_learner("lame", config, seed=settings["learner_seed"])
        learner.learn(stream[0])
        res = evaluate(learner, x, y, seeds=seeds, batch_size=batch, alpha=alpha, orders=settings["orders"])
        measured[f"{label}/temperature"] = round(learner.temperature, 4)
        for order, (b, a) in res.items():
            measured[f"{label}/{order}/no_adapt"] = round(b, 4)
            measured[f"{label}/{order}/lame"] = round(a, 4)
            measured[f"{label}/{order}/gain"] = round(a - b, 4)
        held &= res["iid"][1] - res["iid"][0] >= -tol
        held &= res["sorted"][1] - res["sorted"][0] >= -tol
        held &= res["dirichlet"][1] - res["dirichlet"][0] >= gain
    what = (
        "CLINC150 MiniLM features (150 intents)"
        if settings["data"]["name"] == "clinc150"
        else f"{settings['data']['name']} ({stream.num_classes} classes)"
    )
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "LAME, a parameter-free correction of a frozen classifier's outputs by Laplacian-regularised "
            "maximum likelihood over each test batch, does not hurt on i.i.d. batches and helps on "
            "class-imbalanced non-i.i.d. batches"
        ),
        criterion=(
            f"on {what}, batches of {batch}, mean over {len(seeds)} draw(s) of each batch order, for "
            f"every inner classifier ({', '.join(settings['inners'])}): LAME >= no adaptation - "
            f"{tol * 100:.1f} points on i.i.d. and class-sorted batches and >= no adaptation + "
            f"{gain * 100:.0f} points on Dirichlet({alpha}) batches"
        ),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            "LAME: official defaults (rbf affinity, sigma = mean 5th-neighbour distance, lambda 1, <= 100 "
            "bound iterations); inner probabilities = softmax(scores / T) with T fitted by maximum likelihood "
            "on the training data; features for the affinity: the inputs (frozen-encoder features). "
            "TENT-style entropy minimisation is not measured"
        ),
    )


PAPER = Paper(
    number=47,
    short_name="lame",
    title="Parameter-free Online Test-time Adaptation",
    category="test-time adaptation",
    status="claim checked",
    implemented_by=("lifelong.methods.lame",),
    arxiv="2201.05718",
    reproduce=reproduce,
)
