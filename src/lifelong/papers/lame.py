"""Seed paper 47: *Parameter-free Online Test-time Adaptation* (LAME; Boudiaf et al., CVPR 2022).

Claim (catalogue): correcting a frozen classifier's outputs on each test batch with
LAME is "conservative" — it never costs more than 0.5 point of accuracy against no
adaptation when test batches are i.i.d. — and it helps when batches are
class-imbalanced and non-i.i.d.: >= 3 points on batches whose class proportions are
drawn from a Dirichlet(0.1) (the paper's non-i.i.d. streams). Label-sorted batches
are also measured.

Protocol: a classifier is trained once on all classes (i.i.d.), then the test set is
streamed in batches of 32 in three orders (i.i.d., Dirichlet(0.1), class-sorted),
each order drawn with 3 seeds (1 at quick scale); accuracy is measured batch by
batch with and without LAME (official defaults: RBF affinity, k = 5, lambda = 1). The criterion is checked
for every inner classifier: a linear softmax classifier (the paper's setting: a
trained network's softmax) and a cosine prototype classifier (NCM). Both get a
temperature fitted on their training data (LAME needs probabilities).

``quick``: 10 overlapping Gaussian blobs in 16-d, 100 per class (seconds). ``full``: CLINC150 as
frozen all-MiniLM-L6-v2 features, 150 intents. Run ``lifelong reproduce lame``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lifelong.papers.base import Claim, Paper

BATCH = 32
ALPHA = 0.1
ORDERS = ("iid", "dirichlet", "sorted")
IID_TOLERANCE = 0.005
NONIID_GAIN = 0.03
#: inner classifiers: name -> (method, JSON config overrides)
INNERS = {
    "linear": ("finetune", '{"hidden": [], "epochs": 10, "lr": 0.1, "batch_size": 32}'),
    "ncm": ("ncm", '{"metric": "cosine"}'),
}


def _clinc_root() -> str | None:
    """``LIFELONG_DATA`` (left to the loader), else the workspace's ``../shared/data`` if it has CLINC150."""
    if os.environ.get("LIFELONG_DATA"):
        return None
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return str(shared) if (shared / "clinc150" / "data_full.json").exists() else None


def _data(scale: str):
    from lifelong.data import load_dataset, make_blobs

    if scale == "quick":
        return make_blobs(num_classes=10, per_class=100, dim=16, spread=3.0, seed=0)
    return load_dataset("clinc150", data_root=_clinc_root(), progress=False)


def evaluate(learner, x, y, seeds=(0, 1, 2), batch_size: int = BATCH, alpha: float = ALPHA) -> dict:
    """Batch-by-batch accuracy of the inner learner and of LAME for each test order (mean over ``seeds``)."""
    from lifelong.methods.lame import batched_accuracy, tta_batches

    out = {}
    for order in ORDERS:
        base, adapted = [], []
        for seed in seeds:
            batches = tta_batches(y.numpy(), batch_size, order, alpha=alpha, seed=seed)
            base.append(batched_accuracy(learner.inner.predict, x, y, batches))
            adapted.append(batched_accuracy(learner.predict, x, y, batches))
        out[order] = (float(np.mean(base)), float(np.mean(adapted)))
    return out


def reproduce(scale: str = "quick") -> Claim:
    """LAME vs no adaptation on i.i.d., Dirichlet and sorted test batches (see the module docstring)."""
    from lifelong.methods import make_learner
    from lifelong.scenarios import class_incremental

    data = _data(scale)
    stream = class_incremental(data, tasks=1, seed=-1)
    x, y = stream[0].test_tensors()
    seeds = (0,) if scale == "quick" else (0, 1, 2)
    measured: dict = {"order_seeds": len(seeds)}
    held = True
    for label, (method, cfg) in INNERS.items():
        learner = make_learner("lame", {"inner": method, "inner_config": cfg}, seed=0)
        learner.learn(stream[0])
        res = evaluate(learner, x, y, seeds=seeds)
        measured[f"{label}/temperature"] = round(learner.temperature, 4)
        for order, (b, a) in res.items():
            measured[f"{label}/{order}/no_adapt"] = round(b, 4)
            measured[f"{label}/{order}/lame"] = round(a, 4)
            measured[f"{label}/{order}/gain"] = round(a - b, 4)
        held &= res["iid"][1] - res["iid"][0] >= -IID_TOLERANCE
        held &= res["sorted"][1] - res["sorted"][0] >= -IID_TOLERANCE
        held &= res["dirichlet"][1] - res["dirichlet"][0] >= NONIID_GAIN
    what = "10 Gaussian blobs (16-d, overlapping)" if scale == "quick" else "CLINC150 MiniLM features (150 intents)"
    return Claim(
        paper=PAPER.short_name,
        statement=("LAME, a parameter-free correction of a frozen classifier's outputs by Laplacian-regularised "
                   "maximum likelihood over each test batch, does not hurt on i.i.d. batches and helps on "
                   "class-imbalanced non-i.i.d. batches"),
        criterion=(f"on {what}, batches of {BATCH}, mean over {len(seeds)} draw(s) of each batch order, for "
                   f"both a linear softmax and a cosine-prototype classifier: LAME >= no adaptation - "
                   f"{IID_TOLERANCE * 100:.1f} points on i.i.d. and class-sorted batches and >= no adaptation + {NONIID_GAIN * 100:.0f} points on "
                   f"Dirichlet({ALPHA}) batches"),
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=("LAME: official defaults (rbf affinity, sigma = mean 5th-neighbour distance, lambda 1, <= 100 "
               "bound iterations); inner probabilities = softmax(scores / T) with T fitted by maximum likelihood "
               "on the training data; features for the affinity: the inputs (frozen-encoder features). "
               "TENT-style entropy minimisation is not measured"),
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
