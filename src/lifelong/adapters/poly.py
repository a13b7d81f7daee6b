"""Routed LoRA skill inventories: Poly and MHR (Multi-Head Routing) injected into stock ``nn.Linear`` modules.

Caccia, Ponti, Su, Pereira, Le Roux, Sordoni, *Multi-Head Adapter Routing for Cross-Task Generalization*,
NeurIPS 2023 (arXiv 2211.03831); Poly is Ponti et al., *Combining Parameter-efficient Modules for Task-level
Generalisation* (arXiv 2202.13914). Official code: ``microsoft/mttl`` (commit 28b7ae5a, ``mttl/models/poly.py``);
the tensor layout follows HF PEFT's ``peft.tuners.poly`` so the two can be compared weight for weight.

Each adapted layer holds an inventory of ``n_skills`` LoRA skills, split into ``n_splits`` heads:
``lora_A`` (n_splits, n_skills, in / n_splits, r) and ``lora_B`` (n_splits, n_skills, r, out / n_splits), and
per-task routing logits ``module_logits`` (n_tasks, n_splits · n_skills). For a task t the routing weights of head
k are ``w = sigmoid(z_{t,k}) / Σ_j sigmoid(z_{t,k,j})`` (a relaxed Bernoulli sample at temperature 1 instead of the
sigmoid while training when ``relaxed_bernoulli`` is set), each head mixes its own slice of the skills
(``A_t^(k) = Σ_j w_j A_j^(k)``: A split along the input dimension, B along the output dimension) and the layer
returns ``W x + b + x A_t B_t / r``. ``n_splits = 1`` is Poly; ``n_splits > 1`` is MHR.

Few-shot modes (:func:`set_poly_mode`): ``"full"`` trains the inventory and the logits, ``"z"`` (MHR-z) trains only
the routing logits, ``"mu"`` (MHR-μ) replaces the router by the uniform average of the skills — collapsed here
into one averaged LoRA (:meth:`PolyLinear.collapse_to_average`) — and trains that single adapter.

Task ids are passed per batch: ``poly_forward(model, x, task_ids)`` (or ``with poly_task_ids(model, ids): ...``).

Deliberate differences from PEFT's ``PolyRouter``: the plain sigmoid is the default while training (the MHR T0
configuration, ``module_logits_relaxed_bernoulli: false``; PEFT always samples a relaxed Bernoulli in training
mode — set ``relaxed_bernoulli=True`` for PEFT's behaviour); inputs may be 2-D (batch, in) as well as 3-D
(batch, seq, in); an optional ``torch.Generator`` drives initialisation and the relaxed-Bernoulli noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from lifelong.adapters.lora.layer import WrappedLinear
from lifelong.adapters.lora.model import find_targets
from lifelong.errors import ConfigError

#: Added to the sum of the routing weights before dividing (PEFT's and mttl's ``EPS``).
EPS = 1e-12
#: The modes of :func:`set_poly_mode`.
POLY_MODES = ("full", "z", "mu", "adapters", "frozen")


@dataclass
class PolyConfig:
    """Settings of a routed LoRA inventory (Poly when ``n_splits == 1``, MHR when ``n_splits > 1``).

    ``r``: rank of each skill; ``n_skills``: skills in each layer's inventory; ``n_splits``: routing heads;
    ``n_tasks``: rows of routing logits; ``relaxed_bernoulli``: sample a relaxed Bernoulli (Gumbel-sigmoid,
    temperature ``temperature``) while training instead of the plain sigmoid; ``init_b_zero``: B starts at 0
    (the update starts at 0, PEFT ``init_weights=True``); ``target_modules``: ``nn.Linear`` names or a regex
    (PEFT's matching rules, :func:`lifelong.adapters.lora.find_targets`).
    """

    r: int = 1
    n_skills: int = 8
    n_splits: int = 1
    n_tasks: int = 1
    relaxed_bernoulli: bool = False
    temperature: float = 1.0
    init_b_zero: bool = True
    target_modules: str | list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("r", "n_skills", "n_splits", "n_tasks"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"PolyConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.temperature <= 0:
            raise ConfigError(f"PolyConfig.temperature must be > 0, got {self.temperature}")


class PolyLinear(WrappedLinear):
    """A stock ``nn.Linear`` plus a routed inventory of LoRA skills (see the module docstring for the maths)."""

    def __init__(self, base_layer: nn.Linear, config: PolyConfig, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ConfigError(f"PolyLinear wraps an nn.Linear, got {type(base_layer).__name__}")
        q = config.n_splits
        if base_layer.in_features % q or base_layer.out_features % q:
            raise ConfigError(
                f"n_splits={q} must divide both in_features={base_layer.in_features} and "
                f"out_features={base_layer.out_features}; pick a divisor of both"
            )
        self.base_layer = base_layer
        self.config = config
        self.r, self.n_skills, self.n_splits, self.n_tasks = config.r, config.n_skills, q, config.n_tasks
        w = base_layer.weight
        kw = {"device": w.device, "dtype": w.dtype}
        self.lora_A = nn.Parameter(torch.empty(q, config.n_skills, self.in_features // q, config.r, **kw))
        self.lora_B = nn.Parameter(torch.empty(q, config.n_skills, config.r, self.out_features // q, **kw))
        self.module_logits = nn.Parameter(torch.empty(config.n_tasks, q * config.n_skills, **kw))
        self.mode = "full"
        self.task_ids: torch.Tensor | None = None
        with torch.no_grad():
            self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """A per (split, skill) as ``nn.Linear`` (Kaiming-uniform, a = √5, on an (r, d) matrix, as mttl and PEFT);
        B = 0 (or Kaiming-uniform without ``init_b_zero``); logits ~ U(−1e-3, 1e-3) (PEFT's ``reset``)."""
        q, s, d, r = self.lora_A.shape
        for skill in range(s):
            for split in range(q):
                param = torch.empty(r, d, dtype=self.lora_A.dtype)
                nn.init.kaiming_uniform_(param, a=math.sqrt(5), generator=generator)
                self.lora_A.data[split, skill] = param.T
        if self.config.init_b_zero:
            nn.init.zeros_(self.lora_B)
        else:
            for skill in range(s):
                for split in range(q):
                    param = torch.empty(self.lora_B.shape[-1], r, dtype=self.lora_B.dtype)
                    nn.init.kaiming_uniform_(param, a=math.sqrt(5), generator=generator)
                    self.lora_B.data[split, skill] = param.T
        nn.init.uniform_(self.module_logits, -1e-3, 1e-3, generator=generator)

    def add_tasks(self, n: int, generator: torch.Generator | None = None) -> list[int]:
        """Append ``n`` fresh routing-logit rows (U(−1e-3, 1e-3): near-uniform weights); returns their task ids."""
        new = torch.empty(n, self.module_logits.shape[1], dtype=self.module_logits.dtype)
        nn.init.uniform_(new, -1e-3, 1e-3, generator=generator)
        first = self.n_tasks
        self.module_logits = nn.Parameter(torch.cat([self.module_logits.data, new.to(self.module_logits.device)]))
        self.n_tasks += n
        return list(range(first, self.n_tasks))

    def routing_weights(self, task_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Weights (batch, n_splits, n_skills) for ``task_ids``: sigmoid (or relaxed-Bernoulli) normalised to sum 1.

        In mode ``"mu"`` (after :meth:`collapse_to_average`) the single averaged skill has weight 1.
        """
        if self.mode == "mu":
            return torch.ones(len(task_ids), self.n_splits, 1, dtype=self.lora_A.dtype, device=self.lora_A.device)
        task_ids = torch.as_tensor(task_ids, device=self.module_logits.device).long()
        if task_ids.numel() and (int(task_ids.max()) >= self.n_tasks or int(task_ids.min()) < 0):
            raise ConfigError(f"task id out of range: this layer has {self.n_tasks} tasks, got {task_ids.tolist()}")
        logits = self.module_logits[task_ids].view(-1, self.n_splits, self.n_skills)
        if self.training and self.config.relaxed_bernoulli:
            t = self.config.temperature
            if generator is None:  # the same draws as torch.distributions (and so PEFT) under torch.manual_seed
                probs = torch.distributions.RelaxedBernoulli(torch.tensor(t), logits=logits).rsample()
            else:
                u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
                u = u.clamp(torch.finfo(u.dtype).eps, 1 - torch.finfo(u.dtype).eps)
                probs = torch.sigmoid((u.log() - (-u).log1p() + logits) / t)
        else:
            probs = torch.sigmoid(logits)
        return probs / (probs.sum(dim=-1, keepdim=True) + EPS)

    def mixed_factors(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example ``(A, B)`` of shapes (batch, in, r) and (batch, r, out): each head mixes its own slice."""
        w = self.routing_weights(task_ids)
        a = torch.einsum("bqs,qsdr->bqdr", w, self.lora_A).reshape(len(w), self.in_features, self.r)
        b = torch.einsum("bqs,qsrd->bqrd", w, self.lora_B).transpose(1, 2).reshape(len(w), self.r, self.out_features)
        return a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b + x A_t B_t / r`` for the task ids set by :func:`poly_task_ids` (one id per example)."""
        out = self.base_layer(x)
        if self.task_ids is None:
            raise ConfigError("no task ids set: call the model through poly_forward(model, x, task_ids)")
        ids = self.task_ids
        if ids.numel() == 1 and x.shape[0] != 1:
            ids = ids.expand(x.shape[0])
        if ids.shape[0] != x.shape[0]:
            raise ConfigError(f"{ids.shape[0]} task ids for a batch of {x.shape[0]} examples")
        a, b = self.mixed_factors(ids)
        h = x.to(a.dtype)
        squeeze = h.dim() == 2
        if squeeze:
            h = h.unsqueeze(1)
        delta = h.bmm(a).bmm(b) / self.r
        if squeeze:
            delta = delta.squeeze(1)
        return out + delta.to(out.dtype)

    @torch.no_grad()
    def collapse_to_average(self) -> None:
        """MHR-μ: replace the inventory by one adapter, the uniform average of the skills (per head), and drop
        the router. Trainable afterwards: one LoRA of rank r (``(in + out) · r`` parameters). Same function as
        mttl's ``MuZ`` (an AverageSelector over the full inventory, all skills trainable) and, under Adam, the same
        trajectory up to Adam's eps: every skill gets 1/S of the mixed gradient, so all move alike."""
        self.lora_A = nn.Parameter(self.lora_A.mean(dim=1, keepdim=True))
        self.lora_B = nn.Parameter(self.lora_B.mean(dim=1, keepdim=True))
        self.n_skills = 1
        self.mode = "mu"

    def extra_repr(self) -> str:
        return f"r={self.r}, n_skills={self.n_skills}, n_splits={self.n_splits}, n_tasks={self.n_tasks}"


def poly_layers(model: nn.Module) -> dict[str, PolyLinear]:
    """The :class:`PolyLinear` modules of ``model`` by full name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PolyLinear)}


def inject_poly(model: nn.Module, config: PolyConfig, seed: int | None = None) -> list[str]:
    """Wrap the ``nn.Linear`` modules ``config.target_modules`` selects in :class:`PolyLinear`; returns their names.

    The base weights are frozen (``requires_grad = False``); ``seed`` seeds the initialisation.
    """
    targets = config.target_modules or [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = find_targets(model, targets)
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        layer = PolyLinear(getattr(owner, child), config, g)
        setattr(owner, child, layer)
    set_poly_mode(model, "full")
    return names


@contextmanager
def poly_task_ids(model: nn.Module, task_ids: torch.Tensor | Sequence[int]) -> Iterator[nn.Module]:
    """Within the block every :class:`PolyLinear` of ``model`` routes with ``task_ids`` (one per example)."""
    layers = list(poly_layers(model).values())
    ids = torch.as_tensor(task_ids).long().reshape(-1)
    for layer in layers:
        layer.task_ids = ids
    try:
        yield model
    finally:
        for layer in layers:
            layer.task_ids = None


def poly_forward(model: nn.Module, x: torch.Tensor, task_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """``model(x)`` with every routed layer using ``task_ids`` (a tensor or sequence, one id per example)."""
    with poly_task_ids(model, task_ids):
        return model(x)


def add_poly_tasks(model: nn.Module, n: int, seed: int | None = None) -> list[int]:
    """Append ``n`` new tasks (fresh near-zero logits) to every routed layer; returns the new task ids."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    ids: list[int] = []
    for layer in poly_layers(model).values():
        ids = layer.add_tasks(n, g)
    return ids


def set_poly_mode(model: nn.Module, mode: str) -> list[nn.Parameter]:
    """Set what trains in every routed layer and return those parameters (base weights stay frozen).

    ``"full"``: inventory (A, B) and routing logits; ``"z"`` (MHR-z): routing logits only; ``"mu"`` (MHR-μ):
    collapse each inventory to its average skill and train that single adapter; ``"adapters"``: the inventory with
    the routing frozen (e.g. at its near-uniform initialisation); ``"frozen"``: nothing.
    """
    if mode not in POLY_MODES:
        raise ConfigError(f"unknown poly mode {mode!r}; use one of {', '.join(POLY_MODES)}")
    params: list[nn.Parameter] = []
    for layer in poly_layers(model).values():
        if mode == "mu" and layer.mode != "mu":
            layer.collapse_to_average()
        elif mode != "mu" and layer.mode == "mu":
            raise ConfigError("a layer collapsed to its average skill (mode 'mu') cannot be routed again")
        train_ab = mode in ("full", "mu", "adapters")
        train_z = mode in ("full", "z")
        layer.lora_A.requires_grad_(train_ab)
        layer.lora_B.requires_grad_(train_ab)
        layer.module_logits.requires_grad_(train_z)
        params += [p for p in (layer.lora_A, layer.lora_B, layer.module_logits) if p.requires_grad]
    return params


def routing_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The routing logits of every routed layer (for a separate learning rate)."""
    return [layer.module_logits for layer in poly_layers(model).values() if layer.mode != "mu"]


def trainable_count(model: nn.Module, task_ids: Sequence[int] | None = None) -> int:
    """Trainable parameters of ``model``; with ``task_ids``, routing logits count only those tasks' rows
    (what a few-shot run on those tasks actually updates)."""
    total = 0
    routing = {id(p) for p in routing_parameters(model)}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if task_ids is not None and id(p) in routing:
            total += len(task_ids) * p.shape[1]
        else:
            total += p.numel()
    return total


__all__ = [
    "EPS",
    "POLY_MODES",
    "PolyConfig",
    "PolyLinear",
    "poly_layers",
    "inject_poly",
    "poly_task_ids",
    "poly_forward",
    "add_poly_tasks",
    "set_poly_mode",
    "routing_parameters",
    "trainable_count",
]
