"""Baselines: SI, MAS and PackNet next to EWC, ER and fine-tuning on split MNIST.

Split MNIST as the default benchmark (the 5,000-image subset, 5 experiences of 2 classes, class order
seeded by the run seed), in two settings:

- class-incremental (no task id at test): finetune, ewc, si, mas, er — every arm trains a single head
  over the classes seen so far (the library default);
- task-incremental (``task_incremental``: the task id is given at test): finetune, ewc, si, mas with the
  multi-head loss (cross-entropy over the current task's classes, the papers' split-MNIST protocol; EWC
  gets it from a benchmark-local subclass, ``ewc.py`` has no such option) and packnet.

Same budget for every arm: MLP 256-256, SGD (momentum 0.9), batch 32, 3 passes over each experience
(PackNet: 2 training epochs + 1 retraining epoch after pruning). Each arm's lr and its key knob (EWC's and
MAS's lambda, SI's c) are picked together with ``pick_on_validation`` from one grid on a validation stream
(20 % of the training images held out, stratified, class order of seed 100), separately per setting;
then 3 test seeds, paired differences with a 95 % t-interval (``paired``).

Run: ``.venv/bin/python benchmarks/baselines_regpack.py [--seeds 0,1,2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from lifelong.data import load_dataset
from lifelong.errors import NonFiniteLossError
from lifelong.evaluation import run
from lifelong.methods import get_method
from lifelong.methods.config import build_config
from lifelong.methods.ewc import EWC
from lifelong.papers.common import paired, pick_on_validation, validation_split
from lifelong.runtime import configure_threads
from lifelong.scenarios import class_incremental, task_incremental

TUNE_SEED = 100
LR_GRID = (0.003, 0.01, 0.03)
KNOBS = {
    "ewc": ("ewc_lambda", (10.0, 100.0, 1000.0)),
    "si": ("si_c", (0.1, 1.0, 10.0)),
    "mas": ("mas_lambda", (0.1, 1.0, 10.0)),
}
COMMON = {"epochs": 3, "batch_size": 32, "hidden": (256, 256)}


class EWCMultiHead(EWC):
    """EWC with the multi-head loss (cross-entropy over the current experience's classes) — benchmark only."""

    def before_experience(self, experience) -> None:  # noqa: ANN001
        current = torch.zeros(self.num_classes, dtype=torch.bool)
        current[list(experience.classes)] = True
        self._current = current

    def loss(self, x, y, experience):  # noqa: ANN001, ANN201
        allowed = self.classes.seen & self._current
        ce = F.cross_entropy(self.model(x).masked_fill(~allowed, float("-inf")), y)
        if not self.fisher:
            return ce
        penalty = sum(
            (self.fisher[n] * (p - self.anchor[n]).pow(2)).sum()
            for n, p in self.model.named_parameters()
            if n in self.fisher
        )
        return ce + 0.5 * self.config.ewc_lambda * penalty


def arms(setting: str) -> dict[str, tuple[type, dict]]:
    """Arm name -> (learner class, fixed config) for ``setting`` ("class" or "task")."""
    if setting == "class":
        return {
            "finetune": (get_method("finetune"), dict(COMMON)),
            "ewc": (get_method("ewc"), dict(COMMON)),
            "si": (get_method("si"), dict(COMMON)),
            "mas": (get_method("mas"), dict(COMMON)),
            "er": (get_method("er"), dict(COMMON)),
        }
    multi = {**COMMON, "loss_scope": "current"}
    return {
        "finetune": (get_method("finetune"), multi),
        "ewc": (EWCMultiHead, dict(COMMON)),
        "si": (get_method("si"), multi),
        "mas": (get_method("mas"), multi),
        "packnet": (get_method("packnet"), {**COMMON, "epochs": 2, "retrain_epochs": 1}),
    }


def grid(arm: str) -> list[dict]:
    """The settings tried for ``arm``: every lr, times the arm's own knob values."""
    if arm in KNOBS:
        key, values = KNOBS[arm]
        return [{"lr": lr, key: v} for v in values for lr in LR_GRID]
    return [{"lr": lr} for lr in LR_GRID]


def row(p: dict) -> str:
    """A paired result as table cells: mean | 95 % interval | held."""
    held = "yes" if p["held"] else "no"
    return f"{100 * p['mean']:+.2f} | [{100 * p['lo']:+.2f}, {100 * p['hi']:+.2f}] | {held}"


def final_acc(cls: type, cfg: dict, stream, seed: int) -> float:  # noqa: ANN001
    """Final average accuracy (mean of the last row of R); 0 for a run whose loss diverged."""
    learner = cls(build_config(cls.config_class, cfg), seed=seed)
    try:
        return float(run(stream, learner, seed=seed, progress=False).accuracy_matrix[-1].mean())
    except NonFiniteLossError:  # a diverged setting scores 0 (reported as such)
        print(f"    {cls.name} {cfg} diverged (NaN loss): scored 0", flush=True)
        return 0.0


def main() -> None:
    """Tune every arm on validation, run the test seeds, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default="class,task")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    configure_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    data = load_dataset("mnist")
    val = validation_split(data, 0.2, TUNE_SEED)
    scen = {"class": class_incremental, "task": task_incremental}
    out: dict = {}
    for setting in args.settings.split(","):
        make = scen[setting]
        vstream = make(val, tasks=5, seed=TUNE_SEED)
        tuned, scores, acc = {}, {}, {}
        for arm, (cls, cfg) in arms(setting).items():
            g = grid(arm)
            labels = [", ".join(f"{k}={v:g}" for k, v in s.items()) for s in g]
            by = dict(zip(labels, g))
            best, sc = pick_on_validation(
                labels, lambda lab, c=cls, f=cfg, b=by, v=vstream: final_acc(c, {**f, **b[lab]}, v, TUNE_SEED)
            )
            tuned[arm], scores[arm] = by[best], sc
            acc[arm] = [final_acc(cls, {**cfg, **by[best]}, make(data, tasks=5, seed=s), s) for s in seeds]
            test = [round(a, 4) for a in acc[arm]]
            print(f"[{setting}] {arm:9s} picked {best:28s} test {test}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        pairs = {}
        for a, b in [
            ("si", "finetune"),
            ("mas", "finetune"),
            ("ewc", "finetune"),
            ("si", "ewc"),
            ("mas", "ewc"),
            ("packnet", "finetune"),
            ("er", "finetune"),
            ("er", "si"),
            ("er", "mas"),
        ]:
            if a in acc and b in acc:
                pairs[f"{a} - {b}"] = paired(acc[a], acc[b])
        out[setting] = {"tuned": tuned, "val_scores": scores, "test": acc, "paired": pairs}
        print(f"\n### {setting}-incremental split MNIST (final average accuracy %, seeds {seeds})\n")
        print("| arm | picked on validation | seed accuracies | mean |")
        print("|---|---|---|---:|")
        for arm in acc:
            picked = ", ".join(f"{k}={v:g}" for k, v in tuned[arm].items())
            per_seed = ", ".join(f"{100 * a:.1f}" for a in acc[arm])
            print(f"| {arm} | {picked} | {per_seed} | {100 * sum(acc[arm]) / len(seeds):.2f} |")
        print("\n| paired difference | mean (pts) | 95 % CI | held (> 0) |")
        print("|---|---:|---|---|")
        for k, p in pairs.items():
            print(f"| {k} | {row(p)} |")
        print()
    print(f"total {time.perf_counter() - t0:.0f} s wall")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
