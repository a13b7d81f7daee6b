"""The Learner protocol and the one base class for gradient-trained methods (DESIGN §1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.encoders import MLP
from lifelong.errors import CheckpointError, DataError, NonFiniteLossError
from lifelong.heads import Classifier
from lifelong.methods.config import MethodConfig, hp
from lifelong.optim import build_optimizer
from lifelong.optim.spec import parse_optimizer_spec
from lifelong.scenarios import Experience

if TYPE_CHECKING:
    from lifelong.optim.batch_size import BatchSizeController
    from lifelong.optim.schedules import MultiplierSchedule


@runtime_checkable
class Learner(Protocol):
    """What every method implements.

    ``predict`` returns scores of shape ``(n, v)`` where ``v`` is one more than the
    largest class id seen so far; classes not seen (or outside the given task)
    score ``-inf``. Optional members used when present: ``prepare(input_shape,
    num_classes)``, ``state_dict()`` / ``load_state_dict(state)`` (tensors and
    JSON-able values only), ``samples_seen`` and ``parameter_counts()``.
    """

    def learn(self, experience: Experience) -> None:
        """Train on one experience."""

    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Scores ``(n, v)`` over the classes seen so far (``-inf`` for classes not predictable)."""


class ClassTracker:
    """Seen classes and each task's classes, shared by every learner for masking."""

    def __init__(self) -> None:
        self.seen: torch.Tensor | None = None  # bool (num_classes,)
        self.task_classes: dict[int, list[int]] = {}

    def prepare(self, num_classes: int) -> None:
        """Allocate the mask for ``num_classes`` classes (none seen)."""
        self.seen = torch.zeros(num_classes, dtype=torch.bool)

    def observe(self, experience: Experience, labels: torch.Tensor) -> None:
        """Record the classes present in ``labels`` (and the task's classes)."""
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.seen)):
            raise DataError(
                f"experience {experience.index} has labels outside [0, {len(self.seen)}); "
                "check the dataset's class names and the scenario's class order"
            )
        self.seen[labels.unique()] = True
        if experience.task_id is not None:
            old = set(self.task_classes.get(experience.task_id, []))
            self.task_classes[experience.task_id] = sorted(old | set(experience.classes))

    @property
    def visible(self) -> int:
        """Number of score columns ``predict`` returns: 1 + the largest seen id (0 if none)."""
        ids = torch.nonzero(self.seen).flatten()
        return int(ids.max()) + 1 if len(ids) else 0

    def mask(self, scores: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Cut scores to the visible columns and set unseen / other-task classes to -inf."""
        v = self.visible
        allowed = self.seen[:v].clone()
        if task_id is not None and task_id in self.task_classes:
            only = torch.zeros_like(allowed)
            only[[c for c in self.task_classes[task_id] if c < v]] = True
            allowed &= only
        return scores[:, :v].masked_fill(~allowed, float("-inf"))

    def state(self) -> dict:
        """The seen-class mask and each task's classes (tensors and JSON-able values)."""
        return {"seen": self.seen.clone(), "task_classes": {str(k): v for k, v in self.task_classes.items()}}

    def load(self, state: dict) -> None:
        """Restore :meth:`state`."""
        self.seen = state["seen"].to(torch.bool).clone()
        self.task_classes = {int(k): list(v) for k, v in state["task_classes"].items()}


class LearnerBase:
    """The bookkeeping every learner shares: its config and seed, the classes seen, the samples counted.

    Learners that train by one gradient loop subclass :class:`GradientLearner`; the
    others (prototype classifiers, mixtures of experts, test-time adapters) subclass
    this and add their own ``learn`` / ``predict``. ``base_state`` / ``read_base_state``
    store the shared part of a checkpoint.
    """

    config_class: type[MethodConfig] = MethodConfig
    name: str = "learner"  # set by @register
    #: the scenario the method is built for (``lifelong list scenarios``); the defaults matrix
    #: (benchmarks/defaults.py) and its floor test run it there
    scenario: str = "class-incremental"

    def __init__(self, config: MethodConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        self.classes = ClassTracker()
        self.samples_seen = 0

    def base_state(self) -> dict:
        """The seen classes and the number of samples learned from (tensors and JSON-able values)."""
        return {"classes": self.classes.state(), "samples_seen": self.samples_seen}

    @staticmethod
    def read_base_state(state: dict) -> tuple[ClassTracker, int]:
        """The seen classes and sample count stored by :meth:`base_state`, without touching the learner.

        Raises ``KeyError`` / ``TypeError`` / ``ValueError`` on a mismatch, so a learner can
        check the whole checkpoint before it changes anything.
        """
        tracker = ClassTracker()
        tracker.load(state["classes"])
        return tracker, int(state["samples_seen"])


@dataclass
class GradientConfig(MethodConfig):
    """Shared training settings of gradient methods (Mammoth/Avalanche-style defaults for MLPs on MNIST)."""

    adaptive_batch: ClassVar[bool] = True  # the training loop grows the batch when the optimizer spec asks
    #: defaults per data kind (lifelong.data.kinds), picked on seed 0 of each default stream from lr in
    #: {0.01, 0.05, 0.1} (pixels) and {0.1, 1, 3} x {MLP, linear} (embeddings): on pixels lr 0.05 (ER on
    #: split MNIST 79.1 % vs 75.8 % at 0.01; on digits 75.9 % vs 24.7 %); on unit-norm sentence embeddings
    #: an MLP at lr 0.01 barely moves (ER 4 % on CLINC150): a linear head at lr 1 (ER 71 %, joint 95 %)
    data_defaults: ClassVar[dict[str, dict]] = {"pixels": {"lr": 0.05}, "embeddings": {"hidden": (), "lr": 1.0}}

    epochs: int = hp(3, "passes over each experience's training data (online streams force 1)")
    batch_size: int = hp(32, "mini-batch size (online streams use the stream's batch size)")
    lr: float = hp(0.01, "learning rate")
    optimizer: str = hp(
        "sgd",
        "optimizer (`lifelong list optimizers`), optionally + an adaptive batch size: "
        "sgd+norm_test[:eta=0.1,max_batch_size=1024] or +inner_product_test (AdAdaGrad)",
    )
    momentum: float = hp(0.9, "momentum (SGD only)")
    weight_decay: float = hp(0.0, "L2 weight decay")
    hidden: tuple[int, ...] = hp((256, 256), "hidden sizes of the MLP backbone")
    reset_optimizer: bool = hp(True, "create a fresh optimizer (no momentum carried over) at each experience")
    lr_schedule: str = hp(
        "constant",
        "learning-rate schedule over each experience's steps: constant | linear | cosine (lifelong.optim.schedules)",
    )
    warmup_steps: int = hp(0, "linear warm-up steps at the start of each experience's schedule")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        from lifelong.errors import ConfigError

        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(
                f"hidden must list layer widths >= 1, like 256,256 (empty: no hidden layer); got {self.hidden}"
            )
        if self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError(
                f"momentum and weight_decay must be >= 0, got {self.momentum}, {self.weight_decay}; "
                "set method.momentum / method.weight_decay to 0 or more"
            )
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ConfigError(
                f"lr_schedule must be constant, linear or cosine, got {self.lr_schedule!r} "
                "(the refined schedule needs an earlier run's gradient norms: use "
                "lifelong.optim.schedules.build_schedule from Python)"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        spec = parse_optimizer_spec(self.optimizer)
        if spec.batch_test is not None and (self.batch_size < 2 or spec.options["max_batch_size"] < self.batch_size):
            raise ConfigError(
                f"an adaptive batch ({spec.batch_test}) needs batch_size >= 2 and max_batch_size >= "
                f"batch_size, got batch_size={self.batch_size}, "
                f"max_batch_size={spec.options['max_batch_size']}"
            )


class GradientLearner(LearnerBase):
    """Base of methods that train a backbone + head by gradient descent.

    Subclasses override :meth:`loss` and the hooks :meth:`before_experience`,
    :meth:`after_step` and :meth:`after_experience`, and keep extra state with
    :meth:`extra_state` / :meth:`load_extra_state`. The training loop slices
    pre-materialised tensors (no DataLoader) so the library adds almost nothing
    over a hand-written loop.
    """

    config_class = GradientConfig
    name = "gradient"

    def __init__(self, config: GradientConfig, seed: int = 0):
        super().__init__(config, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.num_classes: int | None = None
        self.experience_index = -1

    # ---- construction -------------------------------------------------------------
    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The network to train; default an MLP backbone with a linear head."""
        backbone = MLP(input_shape, self.config.hidden)
        return Classifier(backbone, backbone.out_dim, num_classes)

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Build the model (seeded by the learner's seed) for this input shape and class count."""
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = self.build_model(self.input_shape, self.num_classes)
        self.classes.prepare(self.num_classes)
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Optimizer over the trainable parameters, from the config."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        c = self.config
        return build_optimizer(c.optimizer, params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    # ---- the loop ----------------------------------------------------------------------
    def learn(self, experience: Experience) -> None:
        """Train on one experience: hooks, then epochs of shuffled mini-batches."""
        if self.model is None:
            self.prepare(experience.input_shape, experience.num_classes)
        if tuple(experience.input_shape) != self.input_shape:
            raise DataError(
                f"experience {experience.index} has inputs of shape {tuple(experience.input_shape)}"
                f" but the model was built for {self.input_shape}"
            )
        x, y = experience.train_tensors()
        self.experience_index = experience.index
        self.classes.observe(experience, y)
        if self.config.reset_optimizer and self.experience_index > 0:
            self.optimizer = self.make_optimizer()
        self.before_experience(experience)
        self.model.train()
        self.fit(x, y, experience)
        self.after_experience(experience)

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Run the epochs over ``(x, y)``; online experiences get one ordered pass."""
        online = experience.online
        epochs = 1 if online else self.config.epochs
        bs = experience.batch_size if online and experience.batch_size else self.config.batch_size
        n = len(y)
        scheduler = self._make_schedule(epochs * math.ceil(n / bs))
        controller = None if online else self._make_batch_controller(bs, n)
        for _ in range(epochs):
            order = torch.arange(n) if online else torch.randperm(n, generator=self.generator)
            start = 0
            while start < n:
                size = controller.batch_size if controller is not None else bs
                idx = order[start : start + size]
                start += size
                self.train_step(x[idx], y[idx], experience)
                if scheduler is not None:
                    scheduler.step()
                if controller is not None and len(idx) >= 2:
                    controller.update(self.model, self._plain_loss, x[idx], y[idx])

    def _make_schedule(self, total_steps: int) -> MultiplierSchedule | None:
        """The configured LR schedule over ``total_steps`` steps, or None for a constant LR."""
        c = self.config
        if c.lr_schedule == "constant" and c.warmup_steps == 0:
            return None
        from lifelong.optim.schedules import build_schedule

        return build_schedule(
            c.lr_schedule, self.optimizer, total_steps, warmup_steps=min(c.warmup_steps, total_steps - 1)
        )

    def _make_batch_controller(self, batch_size: int, n: int) -> BatchSizeController | None:
        """The optimizer spec's adaptive batch-size controller starting at ``batch_size`` (None without one).

        The test runs on the plain cross-entropy of the stream batch after each step;
        the batch size restarts from ``batch_size`` at each experience.
        """
        return parse_optimizer_spec(self.config.optimizer).batch_controller(batch_size, n)

    def _plain_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.masked_fill(~self.classes.seen, float("-inf")), y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> float:
        """One optimizer step on a batch; stops with :class:`NonFiniteLossError` on NaN/inf."""
        loss = self.loss(x, y, experience)
        value = loss.item()  # one read of the scalar (cheaper than a torch.isfinite op per step)
        if not math.isfinite(value):
            raise NonFiniteLossError(f"{self.name}: the loss became {value} during experience {experience.index}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.samples_seen += len(y)
        self.after_step(x, y, experience)
        return value

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Model scores with classes not seen yet set to -inf (a growing head)."""
        out = self.model(x)
        return out.masked_fill(~self.classes.seen, float("-inf"))

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        """Cross-entropy over the classes seen so far."""
        return F.cross_entropy(self.logits(x), y)

    def before_experience(self, experience: Experience) -> None:
        """Hook called before training on an experience."""

    def after_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Hook called after each optimizer step with the stream batch."""

    def after_experience(self, experience: Experience) -> None:
        """Hook called after training on an experience."""

    # ---- inference -----------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Scores over the classes seen so far (see :class:`Learner`)."""
        if self.model is None:
            return torch.empty(len(x), 0)
        was_training = self.model.training
        self.model.eval()
        scores = self.classes.mask(self.model(x), task_id)
        self.model.train(was_training)
        return scores

    # ---- accounting and checkpoints --------------------------------------------------------
    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters of the model."""
        if self.model is None:
            return 0, 0
        ps = list(self.model.parameters())
        return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)

    def extra_state(self) -> dict:
        """Method-specific state (tensors and JSON-able values) for checkpoints."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` returned."""

    def restore_structure(self, extra: dict) -> None:
        """Before the weights are loaded: rebuild modules the checkpoint's layout needs (e.g. kept adapters)."""

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly: model, optimizer, RNG, counters, extras."""
        if self.model is None:
            return {"built": False}
        return {
            "built": True,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "classes": self.classes.state(),
            "samples_seen": self.samples_seen,
            "experience_index": self.experience_index,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatched state raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            fresh = type(self)(self.config, self.seed)
            fresh.prepare(tuple(state["input_shape"]), int(state["num_classes"]))
            fresh.restore_structure(state["extra"])
            fresh.model.load_state_dict(state["model"], strict=True)
            fresh.classes.load(state["classes"])
            fresh.experience_index = int(state["experience_index"])
            fresh.load_extra_state(state["extra"])
            fresh.optimizer = fresh.make_optimizer()
            fresh.optimizer.load_state_dict(state["optimizer"])
            fresh.generator.set_state(state["generator"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint does not match {self.name} with this config: {e}") from e
        self.__dict__.update(fresh.__dict__)
        self.samples_seen = int(state["samples_seen"])
