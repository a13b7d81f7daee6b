"""Seed paper 35: *Continual Learning with Dependency Preserving Hypernetworks* (Chandra,
Varshney, Srijith, Gupta; WACV 2023, arXiv:2209.07712). Implemented by
:mod:`lifelong.methods.hypernet` (``hypernet``: ``hnet="lstm"`` is the paper's recurrent
hypernetwork, ``hnet="mlp"`` the chunked HNET of von Oswald et al. 2020 it improves on).

Claim (abstract): a recurrent (RNN/LSTM) hypernetwork that generates the target
network's weights chunk after chunk, so that later weights depend on earlier ones,
keeps the parameter efficiency of chunked hypernetworks and continual-learns at least
as well as the MLP hypernetwork; both keep earlier tasks through the output
regulariser on stored task embeddings. Checked here on permuted MNIST (the library's
5,000-image subset; 10 tasks at full scale, each a disjoint share of the training split
(400 images), task 0 unpermuted, task id given at test):

- both hypernetworks' final average accuracy >= dense fine-tuning + 15 points, and
  their forgetting <= 2 points;
- LSTM hypernetwork >= MLP hypernetwork - 0.5 points (the paper reports it better).

Both hypernetworks generate the same target MLP 784-100-10 (79,510 weights) in chunks
of 1,000 from fewer parameters than the target and about as many as each other (MLP
hnet [e, c] -> 59 -> 1000: 70,171; LSTM hnet, 40 hidden units: 70,760), task embeddings of size 96 (chosen over
HNET's 32 on a 4-task pilot with seed 0, where it raised the later tasks' accuracy
of the MLP hnet by about 3 points), chunk embeddings of size 32, beta = 0.01, Adam
1e-3, batch 32 — the same training for every method. The gated pair is the
catalogue's: MLP and LSTM hypernetworks with the plain output regulariser, no growth.
The baseline is the stronger of two dense fine-tunings of the same target MLP (Adam
1e-3 and the library's SGD default, lr 0.01, momentum 0.9). Also reported at full
scale, not gated, because DPHN's regulariser and growth are our guesses: both
hypernetworks with per-task rank-8 growth of the output projection, and the LSTM one
with growth and the Fisher-weighted regulariser.

- ``quick``: 3 tasks (1,333 images each), 10 epochs per task, seed 0, the gated pair only. Fine-tuning
  forgets little over 3 tasks, so the +15-point part is not expected to hold at this
  scale; it checks the forgetting and LSTM-vs-MLP parts and runs in seconds.
- ``full``: 10 tasks, 20 epochs per task, seeds 0, 1, 2.
"""

from __future__ import annotations

import numpy as np

from lifelong.papers.base import Claim, Paper

COMMON = {"hidden": (100,), "batch_size": 32}
ADAM = {"optimizer": "adam", "lr": 0.001}
SGD = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}
HNET = {**ADAM, "emb_dim": 96, "chunk_size": 1000, "chunk_emb_dim": 32, "beta": 0.01}
MLP_HNET = {**HNET, "hnet": "mlp", "mlp_hidden": (59,)}
LSTM_HNET = {**HNET, "hnet": "lstm", "lstm_hidden": 40}
METHODS = {
    "finetune[adam]": ("finetune", ADAM),
    "finetune[sgd]": ("finetune", SGD),
    "hnet-mlp": ("hypernet", MLP_HNET),
    "hnet-lstm": ("hypernet", LSTM_HNET),
    "hnet-mlp+growth": ("hypernet", {**MLP_HNET, "growth_rank": 8}),
    "hnet-lstm+growth": ("hypernet", {**LSTM_HNET, "growth_rank": 8}),
    "hnet-lstm+growth+fisher": ("hypernet", {**LSTM_HNET, "growth_rank": 8, "regularizer": "fisher"}),
}
SCALES = {"quick": {"tasks": 3, "epochs": 10, "seeds": (0,),
                    "methods": ("finetune[adam]", "finetune[sgd]", "hnet-mlp", "hnet-lstm")},
          "full": {"tasks": 10, "epochs": 20, "seeds": (0, 1, 2), "methods": tuple(METHODS)}}
GAP = 0.15
MAX_FORGETTING = 0.02
LSTM_MARGIN = 0.005


def stream(seed: int, data=None, tasks: int = 10):
    """The permuted-MNIST stream of the reproduction (task ids at training and test)."""
    from lifelong.data import load_dataset
    from lifelong.scenarios import domain_incremental

    data = data if data is not None else load_dataset("mnist")
    return domain_incremental(data, tasks=tasks, kind="permuted", seed=seed, task_labels=True)


def measure(scale: str = "quick", data=None, methods=None) -> dict:
    """Every run at ``scale``: {label: [(final acc, forgetting, learn seconds, samples seen, (trainable, total))]}."""
    from lifelong.data import load_dataset
    from lifelong.evaluation import run
    from lifelong.methods import make_learner
    from lifelong.papers.dst_cl import run_row

    spec = SCALES[scale]
    data = data if data is not None else load_dataset("mnist")
    runs: dict[str, list] = {}
    for seed in spec["seeds"]:
        s = stream(seed, data, spec["tasks"])
        for label in methods or spec["methods"]:
            name, cfg = METHODS[label]
            learner = make_learner(name, {**COMMON, **cfg, "epochs": spec["epochs"]}, seed=seed)
            runs.setdefault(label, []).append(run_row(run(s, learner, seed=seed, progress=False), "forgetting"))
    return runs


def reproduce(scale: str = "quick") -> Claim:
    """Check hnets >= fine-tune + 15, forgetting <= 2 and LSTM >= MLP - 0.5 on permuted MNIST."""
    return summarize(measure(scale), scale)


def summarize(runs: dict, scale: str) -> Claim:
    """The :class:`Claim` from the runs :func:`measure` returned at ``scale``."""
    spec = SCALES[scale]
    acc = {k: float(np.mean([r[0] for r in v])) for k, v in runs.items()}
    forg = {k: float(np.mean([r[1] for r in v])) for k, v in runs.items()}
    baseline_label = max(("finetune[adam]", "finetune[sgd]"), key=lambda k: acc[k])
    baseline = acc[baseline_label]
    measured: dict = {}
    for k in runs:
        measured[f"{k} final acc"] = round(acc[k], 4)
        measured[f"{k} forgetting"] = round(forg[k], 4)
    measured["baseline (stronger dense fine-tune)"] = baseline_label
    hnets = ("hnet-mlp", "hnet-lstm")
    for k in hnets:
        measured[f"{k} - baseline (points)"] = round(100 * (acc[k] - baseline), 2)
    measured["hnet-lstm - hnet-mlp (points)"] = round(100 * (acc["hnet-lstm"] - acc["hnet-mlp"]), 2)
    if "hnet-lstm+growth" in acc and "hnet-mlp+growth" in acc:  # not gated: growth is our guess of DPHN's
        measured["with growth: min hnet - baseline (points)"] = round(
            100 * (min(acc["hnet-lstm+growth"], acc["hnet-mlp+growth"]) - baseline), 2)
        measured["with growth: lstm - mlp (points)"] = round(
            100 * (acc["hnet-lstm+growth"] - acc["hnet-mlp+growth"]), 2)
    measured["seeds"] = len(spec["seeds"])
    gap_ok = all(acc[k] >= baseline + GAP for k in hnets)
    forgetting_ok = all(forg[k] <= MAX_FORGETTING for k in hnets)
    lstm_ok = acc["hnet-lstm"] >= acc["hnet-mlp"] - LSTM_MARGIN
    measured["parts held (gap, forgetting, lstm>=mlp-0.5)"] = f"{gap_ok}, {forgetting_ok}, {lstm_ok}"
    return Claim(
        paper=PAPER.short_name,
        statement=("a recurrent (LSTM) hypernetwork generating the target network chunk by chunk, with the output "
                   "regulariser on stored task embeddings, continual-learns at least as well as the chunked MLP "
                   "hypernetwork, and both keep earlier tasks far better than fine-tuning"),
        criterion=(f"permuted MNIST, {spec['tasks']} tasks, task id at test, {len(spec['seeds'])} seed(s), "
                   f"{spec['epochs']} epochs/task: both hnets' final average accuracy >= the stronger dense "
                   "fine-tune + 15 points and forgetting <= 2 points; LSTM hnet >= MLP hnet - 0.5 points"),
        measured=measured,
        held=bool(gap_ok and forgetting_ok and lstm_ok),
        scale=scale,
        notes=("target MLP 784-100-10 generated in chunks of 1,000 by hnets smaller than the target; DPHN's "
               "regulariser and growth are not public (we guess them, see lifelong/methods/hypernet.py); "
               "full-scale table: benchmarks/sparse_hypernet_results.md"),
    )


PAPER = Paper(
    number=35,
    short_name="dphn",
    title="Continual Learning with Dependency Preserving Hypernetworks",
    category="continual method",
    status="claim checked",
    implemented_by=("lifelong.methods.hypernet",),
    arxiv="2209.07712",
    reproduce=reproduce,
)
