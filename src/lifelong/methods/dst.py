"""Continual learning with dynamic sparse training (DST-CL): one sparse sub-network per task, earlier ones frozen.

Continual Learning with Dynamic Sparse Training: Exploring Algorithms for Effective Model Updates
(arXiv 2308.14831). Each task gets a mask over every weight matrix (``uniform`` or ``erk`` density), updated by
prune-and-grow every ``update_every`` batches (``random`` / ``unfired`` / ``gradient`` / ``momentum`` growth).
Weights in earlier tasks' masks get no gradient and keep their values (reuse allowed), and each task has its
own biases, so backward transfer is exactly zero. Without a task id the task is inferred per example
(``task_inference``).

Notes: docs/papers/dst-cl.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError, NonFiniteLossError
from lifelong.heads.task_scores import combine_task_scores
from lifelong.layers.sparse import erk_densities
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience

INIT_MODES = ("uniform", "erk")
GROWTH_MODES = ("random", "unfired", "gradient", "momentum")
TASK_INFERENCE = ("max-logit", "latest")
MASK_SEED_OFFSET = 0x5EED_D57


class SparseMLP(nn.Module):
    """An MLP whose weight matrices are multiplied by a task's masks, with one bias vector per task.

    ``weights[l]`` is the shared dense matrix of layer ``l``; ``bias[l]`` the trainable
    bias of the task being learned, and buffer ``bias_bank{l}`` of shape
    ``(max_tasks, out)`` the stored biases of every task slot. The last layer is the
    output layer over all classes.
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], num_classes: int, max_tasks: int):
        super().__init__()
        dims = [in_dim, *hidden, num_classes]
        self.weights = nn.ParameterList()
        self.bias = nn.ParameterList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layer = nn.Linear(a, b)  # PyTorch's default init, as the official models
            self.weights.append(nn.Parameter(layer.weight.detach().clone()))
            self.bias.append(nn.Parameter(layer.bias.detach().clone()))
            # the initial values, rebuilt from the seed (not saved): fresh weights of every task start here
            self.register_buffer(f"init{i}", layer.weight.detach().clone(), persistent=False)
            self.register_buffer(f"bias_bank{i}", layer.bias.detach().clone().unsqueeze(0).repeat(max_tasks, 1))

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(out, in) of each layer."""
        return [tuple(w.shape) for w in self.weights]

    def init_weight(self, i: int) -> torch.Tensor:
        """Initial value of layer ``i``'s weights."""
        return getattr(self, f"init{i}")

    def bank(self, i: int) -> torch.Tensor:
        """Stored biases of layer ``i``, one row per task slot."""
        return getattr(self, f"bias_bank{i}")

    def forward(
        self,
        x: torch.Tensor,
        masks: list[torch.Tensor],
        slot: int | None = None,
        keep: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits with weights ``W * mask``; biases of ``slot`` from the bank, or the trainable ones if None.

        With ``keep`` (a list), each layer's effective weight ``W * mask`` is appended to it with
        ``retain_grad`` on, so after ``backward`` its ``.grad`` is the dense gradient of the loss
        with respect to every entry, inside the mask or not (what gradient growth scores).
        """
        h = x.reshape(len(x), -1)
        last = len(self.weights) - 1
        for i, (w, m) in enumerate(zip(self.weights, masks)):
            b = self.bias[i] if slot is None else self.bank(i)[slot]
            we = w * m
            if keep is not None:
                we.retain_grad()
                keep.append(we)
            h = F.linear(h, we, b)
            if i < last:
                h = F.relu(h)
        return h


@dataclass
class DSTConfig(GradientConfig):
    """DST-CL settings; defaults from the official ``cifar100.py`` (Adam 1e-3, batch 64, density 0.2)."""

    optimizer: str = hp("adam", "optimizer name (official: adam)")
    lr: float = hp(0.001, "learning rate (official: 1e-3)")
    batch_size: int = hp(64, "mini-batch size (official: 64)")
    epochs: int = hp(20, "passes over each task's data (official: 20)")
    density: float = hp(0.2, "fraction of each task's weights that are active, in (0, 1]")
    init: str = hp("uniform", "mask initialisation: uniform | erk")
    growth: str = hp("random", "growth rule: random | unfired | gradient | momentum")
    prune_rate: float = hp(0.5, "fraction of active weights pruned at an update (official death_rate 0.5)")
    prune_rate_min: float = hp(0.005, "prune rate at the end of the task's cosine decay (official eta_min)")
    update_every: int = hp(400, "batches between prune-and-grow updates (official update_frequency 400)")
    fresh_init: str = hp(
        "random",
        "start value of a new task's weights that no earlier task uses: random (the "
        "network's initial values, as the first task) | zero (the official code)",
    )
    isolate: bool = hp(True, "freeze the weights of earlier tasks' masks (exact isolation)")
    task_inference: str = hp("max-logit", "without a task id at test: max-logit | latest")
    max_tasks: int = hp(100, "task slots (one bias row per layer each)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if not 0 < self.density <= 1:
            raise ConfigError(f"density must lie in (0, 1], got {self.density}")
        if self.init not in INIT_MODES:
            raise ConfigError(f"init must be one of {INIT_MODES}, got {self.init!r}")
        if self.growth not in GROWTH_MODES:
            raise ConfigError(f"growth must be one of {GROWTH_MODES}, got {self.growth!r}")
        if not 0 <= self.prune_rate_min <= self.prune_rate < 1:
            raise ConfigError(
                f"need 0 <= prune_rate_min <= prune_rate < 1, got {self.prune_rate_min} and {self.prune_rate}"
            )
        if self.update_every < 1:
            raise ConfigError(f"update_every must be >= 1, got {self.update_every}")
        if self.fresh_init not in ("random", "zero"):
            raise ConfigError(f"fresh_init must be 'random' or 'zero', got {self.fresh_init!r}")
        if self.task_inference not in TASK_INFERENCE:
            raise ConfigError(f"task_inference must be one of {TASK_INFERENCE}, got {self.task_inference!r}")
        if self.max_tasks < 1:
            raise ConfigError(f"max_tasks must be >= 1, got {self.max_tasks}")


@register("dst")
class DST(GradientLearner):
    """Per-task sparse masks found by dynamic sparse training, with earlier tasks' weights frozen."""

    scenario = "task-incremental"

    config_class = DSTConfig

    def __init__(self, config: DSTConfig, seed: int = 0):
        super().__init__(config, seed)
        # masks and random growth get their own stream: the base generator starts from the same seed as
        # the weight init, and masks drawn from it would pick the weights with the smallest init draws
        self.mask_rng = torch.Generator().manual_seed(MASK_SEED_OFFSET + seed)
        self.masks: dict[int, list[torch.Tensor]] = {}  # slot -> bool mask per layer
        self.slot_classes: dict[int, list[int]] = {}
        self.slot_order: list[int] = []
        # per-experience working state (rebuilt by before_experience)
        self.slot: int | None = None
        self.mask: list[torch.Tensor] = []
        self.used: list[torch.Tensor] = []
        self.frozen: list[torch.Tensor] = []
        self.used_part: list[torch.Tensor] = []
        self.kept_part: list[torch.Tensor] = []
        self.not_frozen: list[torch.Tensor] = []
        self.mask_f: list[torch.Tensor] = []
        self.trainable_f: list[torch.Tensor] = []
        self.fired: list[torch.Tensor] = []
        self.class_mask: torch.Tensor | None = None
        self._effective: list[torch.Tensor] = []  # this step's W * mask, whose .grad is the dense gradient
        self.step_count = 0
        self.total_steps = 1

    # ---- construction ------------------------------------------------------------------
    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return SparseMLP(math.prod(input_shape), tuple(self.config.hidden), num_classes, self.config.max_tasks)

    def _init_mask(self) -> list[torch.Tensor]:
        shapes = self.model.shapes
        if self.config.init == "erk":
            densities = erk_densities([(o, i) for o, i in shapes], self.config.density)
        else:
            densities = [self.config.density] * len(shapes)
        return [torch.rand(s, generator=self.mask_rng) < d for s, d in zip(shapes, densities)]

    # ---- hooks -----------------------------------------------------------------------------
    def before_experience(self, experience: Experience) -> None:
        c = self.config
        slot = experience.task_id if experience.task_id is not None else experience.index
        if not 0 <= slot < c.max_tasks:
            raise ConfigError(
                f"dst has {c.max_tasks} task slots but experience {experience.index} is task {slot}; "
                "raise method.max_tasks"
            )
        self.slot = slot
        others = [m for s, m in self.masks.items() if s != slot]
        # weights earlier tasks use: frozen with isolation; without it they are trained where the new mask
        # covers them and keep their values elsewhere (the official merge restores them after the task)
        self.used = [torch.zeros(s, dtype=torch.bool) for s in self.model.shapes]
        for m in others:
            self.used = [u | mi for u, mi in zip(self.used, m)]
        self.frozen = [u.clone() if c.isolate else torch.zeros_like(u) for u in self.used]
        self.mask = [m.clone() for m in self.masks[slot]] if slot in self.masks else self._init_mask()
        self.fired = [m.clone() for m in self.mask]
        with torch.no_grad():
            # a new task's biases start from the last task's (the official code shares biases)
            src = slot if slot in self.masks or not self.slot_order else self.slot_order[-1]
            for i, b in enumerate(self.model.bias):
                b.copy_(self.model.bank(i)[src])
            if c.fresh_init == "random" and slot not in self.masks:
                for i, (w, u) in enumerate(zip(self.model.weights, self.used)):
                    w.copy_(torch.where(u, w, self.model.init_weight(i)))
            self.used_part = [w.detach() * u for w, u in zip(self.model.weights, self.used)]
        self.not_frozen = [(~f).float() for f in self.frozen]
        self._refresh_masks()
        self._apply_mask()
        classes = torch.zeros(self.num_classes, dtype=torch.bool)
        classes[list(experience.classes)] = True
        self.class_mask = classes
        self.slot_classes[slot] = sorted(set(self.slot_classes.get(slot, [])) | set(experience.classes))
        n = len(experience)
        online = experience.online
        bs = experience.batch_size if online and experience.batch_size else c.batch_size
        self.total_steps = (1 if online else c.epochs) * math.ceil(n / bs)
        self.step_count = 0

    def after_experience(self, experience: Experience) -> None:
        self.masks[self.slot] = [m.clone() for m in self.mask]
        with torch.no_grad():
            for i, b in enumerate(self.model.bias):
                self.model.bank(i)[self.slot] = b
        if self.slot in self.slot_order:
            self.slot_order.remove(self.slot)
        self.slot_order.append(self.slot)

    # ---- training ----------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        """Cross-entropy over the current task's classes (multi-head) of the task's sub-network."""
        self._effective = []
        out = self.model(x, self.mask_f, keep=self._effective)
        return F.cross_entropy(out.masked_fill(~self.class_mask, float("-inf")), y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> float:
        """One step on the dense gradient (frozen entries zeroed), mask re-applied, prune-and-grow when due.

        As in the official code (a dense layer whose inactive weights are zero), each weight's
        gradient is the dense gradient of the loss with respect to the effective weight
        ``W * mask``, not only its active entries: gradient growth scores it and Adam's moments
        (momentum growth) accumulate it. Entries outside the mask move in the step and are set back
        to zero by the mask; frozen entries get no gradient.
        """
        loss = self.loss(x, y, experience)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"dst: the loss became {value} during experience {experience.index}; "
                "lower method.lr or check the inputs for NaN/inf"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for w, we, nf in zip(self.model.weights, self._effective, self.not_frozen):
                w.grad = we.grad * nf  # dense: d loss / d (W * mask) at every entry not frozen
        self._effective = []
        self.optimizer.step()
        self._apply_mask()
        self.samples_seen += len(y)
        self.step_count += 1
        if self.step_count % self.config.update_every == 0 and self.step_count < self.total_steps:
            self._prune_and_grow()
        return value

    def _refresh_masks(self) -> None:
        self.mask_f = [m.float() for m in self.mask]
        trainable = [m & ~f for m, f in zip(self.mask, self.frozen)]
        self.trainable_f = [t.float() for t in trainable]
        # earlier tasks' weights this task does not train keep their values from before the task
        self.kept_part = [p * (u & ~t).float() for p, u, t in zip(self.used_part, self.used, trainable)]

    @torch.no_grad()
    def _apply_mask(self) -> None:
        """W <- W * trainable + kept values: weights of earlier tasks that this task does not train (all of
        them with isolation) keep their values, other weights outside the current mask are 0."""
        for w, t, kp in zip(self.model.weights, self.trainable_f, self.kept_part):
            w.mul_(t).add_(kp)

    def prune_rate_now(self) -> float:
        """Cosine decay from ``prune_rate`` to ``prune_rate_min`` over the task's steps (official DeathCosineDecay)."""
        c = self.config
        t = min(self.step_count / max(self.total_steps, 1), 1.0)
        return c.prune_rate_min + 0.5 * (c.prune_rate - c.prune_rate_min) * (1 + math.cos(math.pi * t))

    @torch.no_grad()
    def _prune_and_grow(self) -> None:
        """Magnitude pruning then growth of as many weights, per layer."""
        rate = self.prune_rate_now()
        for i, w in enumerate(self.model.weights):
            active = self.mask[i]
            n_active = int(active.sum())
            k = math.ceil(rate * n_active)
            if k == 0 or n_active == 0:
                continue
            mag = w.abs().masked_fill(~active, float("inf")).flatten()
            drop = torch.topk(mag, k, largest=False).indices
            new = active.flatten().clone()
            new[drop] = False
            score = self._growth_score(i, w).flatten().masked_fill(new, float("-inf"))
            n_free = int((~new).sum())
            grow = torch.topk(score, min(k, n_free)).indices
            new[grow] = True
            self.mask[i] = new.view_as(active)
            self.fired[i] |= self.mask[i]
        self._refresh_masks()
        self._apply_mask()

    def _growth_score(self, i: int, w: torch.Tensor) -> torch.Tensor:
        g = self.config.growth
        noise = torch.rand(w.shape, generator=self.mask_rng)
        if g == "random":
            return noise
        if g == "unfired":
            return noise + 2.0 * (~self.fired[i]).float()
        if g == "momentum":
            state = self.optimizer.state.get(w, {})
            if "exp_avg" in state:
                m = (state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8)).abs()
            elif state.get("momentum_buffer") is not None:
                m = state["momentum_buffer"].abs()
            else:
                m = w.grad.abs() if w.grad is not None else torch.zeros_like(w)
            return m.masked_fill(self.frozen[i], 0.0) + 1e-12 * noise
        grad = w.grad.abs() if w.grad is not None else torch.zeros_like(w)
        return grad + 1e-12 * noise  # ties (zero gradients) broken at random

    # ---- inference --------------------------------------------------------------------------------
    def _slot_logits(self, x: torch.Tensor, slots: list[int]) -> torch.Tensor:
        return torch.stack([self.model(x, [m.float() for m in self.masks[s]], s) for s in slots])

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Scores with the task's sub-network, or the inferred task's when the id is hidden or unknown."""
        if self.model is None:
            return torch.empty(len(x), 0)
        if not self.masks:
            return self.classes.mask(torch.zeros(len(x), self.num_classes), task_id)
        if task_id is not None and task_id in self.masks:
            return self.classes.mask(self._slot_logits(x, [task_id])[0], task_id)
        if self.config.task_inference == "latest":
            return self.classes.mask(self._slot_logits(x, [self.slot_order[-1]])[0], task_id)
        slots = list(self.slot_order)
        logits = self._slot_logits(x, slots)
        class_masks = torch.zeros(len(slots), self.num_classes, dtype=torch.bool)
        for j, s in enumerate(slots):
            class_masks[j, self.slot_classes[s]] = True
        best = logits.masked_fill(~class_masks[:, None, :], float("-inf")).amax(dim=2)  # (T, n)
        scores = combine_task_scores(logits, class_masks, torch.log_softmax(best.T, dim=1))
        return self.classes.mask(scores, task_id)

    # ---- accounting and checkpoints ------------------------------------------------------------------
    def parameter_counts(self) -> tuple[int, int]:
        """(weights in the union of the task masks + used bias rows, dense weights + used bias rows)."""
        if self.model is None:
            return 0, 0
        rows = max(len(self.masks), 1)
        bias = rows * sum(b.numel() for b in self.model.bias)
        dense = sum(w.numel() for w in self.model.weights)
        union = [torch.zeros(s, dtype=torch.bool) for s in self.model.shapes]
        for m in self.masks.values():
            union = [u | mi for u, mi in zip(union, m)]
        return int(sum(int(u.sum()) for u in union)) + bias, dense + bias

    def density_report(self) -> dict[str, float]:
        """Fraction of weights in each task's mask and in their union (for reports)."""
        total = sum(w.numel() for w in self.model.weights)
        out = {f"task{s}": sum(int(mi.sum()) for mi in m) / total for s, m in self.masks.items()}
        union = [torch.zeros(s, dtype=torch.bool) for s in self.model.shapes]
        for m in self.masks.values():
            union = [u | mi for u, mi in zip(union, m)]
        out["union"] = sum(int(u.sum()) for u in union) / total
        return out

    def extra_state(self) -> dict:
        return {
            "masks": {s: list(m) for s, m in self.masks.items()},
            "slot_classes": {str(s): list(c) for s, c in self.slot_classes.items()},
            "slot_order": list(self.slot_order),
            "mask_rng": self.mask_rng.get_state(),
        }

    def load_extra_state(self, state: dict) -> None:
        self.masks = {int(s): [t.to(torch.bool).clone() for t in m] for s, m in state["masks"].items()}
        if any(
            len(m) != len(self.model.weights) or any(t.shape != w.shape for t, w in zip(m, self.model.weights))
            for m in self.masks.values()
        ):
            raise ValueError("mask shapes differ from the model's weights")
        self.slot_classes = {int(s): list(c) for s, c in state["slot_classes"].items()}
        self.slot_order = [int(s) for s in state["slot_order"]]
        self.mask_rng.set_state(state["mask_rng"])
