"""LoRA: low-rank updates injected into stock ``torch.nn.Linear`` modules.

Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang, Chen, *LoRA: Low-Rank Adaptation of
Large Language Models*, ICLR 2022 (arXiv:2106.09685). A frozen linear map
``W x + b`` becomes ``W x + b + s * B A dropout(x)`` with ``A`` (r x in), ``B``
(out x r), ``s = alpha / r`` (or ``alpha / sqrt(r)`` with rsLoRA, Kalajdzievski 2023),
``A`` initialised like ``nn.Linear`` (Kaiming-uniform, a = sqrt(5)) and ``B = 0``.

The layout follows HF PEFT (``peft.tuners.lora``) so that adapters save and load in
PEFT's own format (:mod:`lifelong.adapters.io`): the wrapped module keeps the
original layer as ``base_layer`` and one ``nn.Linear`` per adapter name in the
``lora_A`` / ``lora_B`` ``ModuleDict`` s. Injection replaces modules of any model in
place (a transformers encoder, a timm ViT, an MLP) and never forks a model file.

Public surface:

- :class:`LoRAConfig` - rank, alpha, dropout, target-module patterns, init.
- :class:`LoRALinear` - the layer; variants subclass it. Extension hooks:
  :meth:`LoRALinear.reset_lora_parameters` (initialisation, dispatching to the
  :data:`LORA_INITS` registry, extend it with :func:`register_lora_init`),
  :meth:`LoRALinear.rank_scale` (per-rank gates or masks, folded into ``B`` when
  merged or exported) and :meth:`LoRALinear.lora_delta` (the adapter's output,
  e.g. a custom autograd rule as in :mod:`lifelong.adapters.allora`).
- :func:`inject_adapter`, :func:`find_targets`, :func:`set_active_adapters`,
  :func:`merge_adapters`, :func:`unmerge_adapters`, :func:`fold_adapter`,
  :func:`delete_adapter`, :func:`unload`, :func:`count_parameters`,
  :func:`check_finite`, :func:`adapters_disabled`.

Merging adds ``s * B A`` to the base weight (one matrix product per layer, no
per-element Python loop); with ``exact=True`` (default) the original weight is kept
so that unmerging every merged adapter restores it bit for bit.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, ClassVar, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError, LifelongError

ALL_LINEAR = "all-linear"


class AdapterError(LifelongError, ValueError):
    """An adapter operation is not valid in the adapter's state (merged twice, NaN weights, unknown name)."""


# ---- configuration ---------------------------------------------------------------------------------
@dataclass
class LoRAConfig:
    """Settings of one LoRA adapter (defaults: HF PEFT's ``LoraConfig``).

    Attributes:
        r: rank of the update ``B A``.
        alpha: scaling numerator; the update is multiplied by ``alpha / r``
            (``alpha / sqrt(r)`` with ``use_rslora``).
        dropout: dropout on the adapter's input (LoRA paper; 0 disables it).
        target_modules: which ``nn.Linear`` modules get the adapter. PEFT semantics: a
            sequence of names matches a module whose full dotted name equals an entry or
            ends with ``"." + entry`` (``("query", "value")``); a single string is a
            regular expression matched against the whole name; ``"all-linear"`` takes
            every ``nn.Linear``.
        exclude_modules: names (same matching as a sequence ``target_modules``) to skip.
        use_rslora: rank-stabilised scaling ``alpha / sqrt(r)``.
        init: initialisation of ``A`` and ``B``, a key of :data:`LORA_INITS`:
            ``"kaiming"`` (LoRA/PEFT default: A Kaiming-uniform, B = 0), ``"gaussian"``
            (A ~ N(0, 1/r^2), B = 0), ``"random"`` (both random: the adapter starts
            non-zero; for tests).
    """

    r: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = ALL_LINEAR
    exclude_modules: tuple[str, ...] = ()
    use_rslora: bool = False
    init: str = "kaiming"

    #: name of the adapter kind, saved with the adapter (``"lora"``, ``"allora"``, ...).
    kind: ClassVar[str] = "lora"

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, (list, set)):
            self.target_modules = tuple(sorted(self.target_modules)) if isinstance(self.target_modules, set) \
                else tuple(self.target_modules)
        if isinstance(self.exclude_modules, (list, set, str)):
            self.exclude_modules = (self.exclude_modules,) if isinstance(self.exclude_modules, str) \
                else tuple(self.exclude_modules)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an invalid value, naming the field and the fix."""
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not math.isfinite(float(self.alpha)) or self.alpha <= 0:
            raise ConfigError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"LoRA dropout must lie in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, str):
            if self.target_modules != ALL_LINEAR:
                try:
                    re.compile(self.target_modules)
                except re.error as e:
                    raise ConfigError(f"target_modules {self.target_modules!r} is not a valid regular "
                                      f"expression ({e}); give a list of module names instead") from None
        elif not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise ConfigError("target_modules must be a regular expression, 'all-linear', or a non-empty list of "
                              f"module names such as ['query', 'value']; got {self.target_modules!r}")
        if self.init not in LORA_INITS:
            raise ConfigError(f"unknown LoRA init {self.init!r}; choose one of {sorted(LORA_INITS)} "
                              "(or register one with lifelong.adapters.register_lora_init)")

    @property
    def scaling(self) -> float:
        """The factor ``s`` multiplying ``B A``."""
        return float(self.alpha) / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self) -> dict:
        """JSON-able dict of the fields plus ``kind``."""
        d = asdict(self)
        d["target_modules"] = d["target_modules"] if isinstance(d["target_modules"], str) \
            else list(d["target_modules"])
        d["exclude_modules"] = list(d["exclude_modules"])
        return {"kind": self.kind, **d}

    @staticmethod
    def from_dict(d: dict) -> "LoRAConfig":
        """Rebuild a config of the right kind from :meth:`to_dict`'s output."""
        d = dict(d)
        kind = d.pop("kind", "lora")
        if kind not in ADAPTER_KINDS:
            raise ConfigError(f"unknown adapter kind {kind!r}; known kinds: {sorted(ADAPTER_KINDS)}")
        cls = ADAPTER_KINDS[kind]
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    @property
    def layer_class(self) -> type["LoRALinear"]:
        """The layer class that runs adapters of this kind."""
        return LoRALinear


#: adapter kind -> config class (variants add themselves on import).
ADAPTER_KINDS: dict[str, type[LoRAConfig]] = {"lora": LoRAConfig}


def register_adapter_kind(config_class: type[LoRAConfig]) -> type[LoRAConfig]:
    """Class decorator making a :class:`LoRAConfig` subclass loadable by its ``kind``."""
    ADAPTER_KINDS[config_class.kind] = config_class
    return config_class


# ---- initialisers ------------------------------------------------------------------------------------
InitFn = Callable[["LoRALinear", str, "torch.Generator | None"], None]
#: init name -> ``fn(layer, adapter_name, generator)`` filling ``layer.lora_A[name]`` / ``lora_B[name]``.
LORA_INITS: dict[str, InitFn] = {}


def register_lora_init(name: str):
    """Decorator registering an initialiser ``fn(layer, adapter_name, generator)`` under ``name``.

    Data-dependent inits (CorDA, PiSSA, ...) can read ``layer.base_layer.weight`` and
    may change it (then they must do so deterministically).
    """

    def wrap(fn: InitFn) -> InitFn:
        LORA_INITS[name] = fn
        return fn

    return wrap


@register_lora_init("kaiming")
def _init_kaiming(layer: "LoRALinear", name: str, generator: torch.Generator | None) -> None:
    """A as ``nn.Linear`` (Kaiming-uniform, a = sqrt(5)), B = 0 (LoRA paper, PEFT ``init_lora_weights=True``)."""
    nn.init.kaiming_uniform_(layer.lora_A[name].weight, a=math.sqrt(5), generator=generator)
    nn.init.zeros_(layer.lora_B[name].weight)


@register_lora_init("gaussian")
def _init_gaussian(layer: "LoRALinear", name: str, generator: torch.Generator | None) -> None:
    """A ~ N(0, (1/r)^2), B = 0 (PEFT ``init_lora_weights="gaussian"``)."""
    nn.init.normal_(layer.lora_A[name].weight, std=1.0 / layer.lora_config[name].r, generator=generator)
    nn.init.zeros_(layer.lora_B[name].weight)


@register_lora_init("random")
def _init_random(layer: "LoRALinear", name: str, generator: torch.Generator | None) -> None:
    """Both factors Kaiming-uniform (PEFT ``init_lora_weights=False``): a non-zero update from the start."""
    nn.init.kaiming_uniform_(layer.lora_A[name].weight, a=math.sqrt(5), generator=generator)
    nn.init.kaiming_uniform_(layer.lora_B[name].weight, a=math.sqrt(5), generator=generator)


# ---- the layer -------------------------------------------------------------------------------------
class SeededDropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014) whose masks come from ``generator`` when one is set.

    With the learner's own generator, dropout masks are part of its reproducible state
    (a resumed run draws the same masks); without one it uses torch's global RNG like
    ``nn.Dropout``.
    """

    def __init__(self, p: float, generator: torch.Generator | None = None):
        super().__init__()
        self.p = float(p)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        g = self.generator
        if g is None:
            keep = torch.rand(x.shape, device=x.device) >= self.p
        else:
            keep = (torch.rand(x.shape, generator=g, device=g.device) >= self.p).to(x.device)
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LoRALinear(nn.Module):
    """An ``nn.Linear`` plus any number of named LoRA adapters (Hu et al. 2022).

    ``forward(x) = base_layer(x) + sum over active, unmerged adapters of lora_delta(x, name)``.
    Merged adapters live inside ``base_layer.weight``. Subclasses change the
    initialisation (:meth:`reset_lora_parameters`), add per-rank gates or masks
    (:meth:`rank_scale`) or change the adapter's computation (:meth:`lora_delta`).
    """

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ConfigError(f"LoRALinear wraps an nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.lora_config: dict[str, LoRAConfig] = {}
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self._weight_backup: torch.Tensor | None = None

    # ---- the wrapped layer's attributes (code that reads .weight / .in_features keeps working) ----
    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def adapter_names(self) -> list[str]:
        """Names of the adapters this layer holds, in the order they were added."""
        return list(self.lora_config)

    # ---- adapters -------------------------------------------------------------------------------
    def add_adapter(self, name: str, config: LoRAConfig, generator: torch.Generator | None = None) -> None:
        """Create adapter ``name`` (rank ``config.r``) and initialise it with ``config.init``.

        ``generator`` (optional) drives the initialisation and the adapter's dropout masks.
        """
        if name in self.lora_config:
            raise AdapterError(f"this layer already has an adapter named {name!r}; pick another name or "
                               "delete_adapter() it first")
        if config.r > min(self.in_features, self.out_features):
            raise ConfigError(f"rank {config.r} is larger than this layer allows: min(in={self.in_features}, "
                              f"out={self.out_features}) = {min(self.in_features, self.out_features)}")
        w = self.base_layer.weight
        self.lora_config[name] = config
        self.lora_A[name] = nn.Linear(self.in_features, config.r, bias=False, device=w.device, dtype=w.dtype)
        self.lora_B[name] = nn.Linear(config.r, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        self.lora_dropout[name] = SeededDropout(config.dropout, generator) if config.dropout > 0 else nn.Identity()
        for mod in (self.lora_A[name], self.lora_B[name], self.lora_dropout[name]):
            mod.train(self.training)
        with torch.no_grad():
            self.reset_lora_parameters(name, generator)

    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None) -> None:
        """Initialise adapter ``name`` with its config's ``init`` (override for custom inits)."""
        LORA_INITS[self.lora_config[name].init](self, name, generator)

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name`` (it must not be merged)."""
        self._require(name)
        if name in self.merged_adapters:
            raise AdapterError(f"adapter {name!r} is merged into the base weight; unmerge it before deleting "
                               "it, or use fold_adapter() to keep its effect")
        del self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
        del self.lora_config[name]
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def _require(self, name: str) -> None:
        if name not in self.lora_config:
            raise AdapterError(f"no adapter named {name!r} in this layer; it has {self.adapter_names or 'none'}")

    def scaling(self, name: str) -> float:
        """The factor multiplying ``B A`` for adapter ``name``."""
        return self.lora_config[name].scaling

    def rank_scale(self, name: str) -> torch.Tensor | None:
        """Per-rank multipliers ``g`` (shape ``(r,)``) so the update is ``s * B diag(g) A``; ``None`` = all ones.

        Override to add gates or masks over the rank components (e.g. TriAdaptLoRA,
        CoDyRA); the forward pass, merging and PEFT export all use it.
        """
        return None

    # ---- computation ----------------------------------------------------------------------------
    def lora_delta(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Output of adapter ``name``: ``s * B diag(g) A dropout(x)`` (override to change the rule)."""
        a = self.lora_A[name].weight
        h = F.linear(self.lora_dropout[name](x.to(a.dtype)), a)
        g = self.rank_scale(name)
        if g is not None:
            h = h * g
        return F.linear(h, self.lora_B[name].weight) * self.scaling(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        for name in self.active_adapters:
            if name not in self.merged_adapters:
                out = out + self.lora_delta(x, name).to(out.dtype)
        return out

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B_eff)`` with the per-rank scale folded into ``B`` (``delta = s * B_eff A``)."""
        self._require(name)
        a, b = self.lora_A[name].weight, self.lora_B[name].weight
        g = self.rank_scale(name)
        return a, (b if g is None else b * g.to(b.dtype))

    def delta_weight(self, name: str) -> torch.Tensor:
        """The dense update ``s * B diag(g) A`` (out x in), computed in float32."""
        a, b = self.factors(name)
        return (b.float() @ a.float()) * self.scaling(name)

    # ---- merging --------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self, names: Sequence[str] | None = None, exact: bool = True) -> None:
        """Add the listed adapters (default: the active ones) into ``base_layer.weight``.

        Raises :class:`AdapterError` for an adapter merged already or holding NaN/inf.
        With ``exact`` the original weight is kept so that unmerging all restores it bit for bit.
        """
        names = list(self.active_adapters if names is None else names)
        for name in names:
            self._require(name)
            if name in self.merged_adapters:
                raise AdapterError(f"adapter {name!r} is already merged; merging it twice would add its update "
                                   "twice. Call unmerge_adapters() first")
            self._check_finite(name)
        w = self.base_layer.weight
        if exact and self._weight_backup is None and not self.merged_adapters and names:
            self._weight_backup = w.detach().clone()
        for name in names:
            w.add_(self.delta_weight(name).to(w.dtype))
            self.merged_adapters.append(name)

    @torch.no_grad()
    def unmerge(self, names: Sequence[str] | None = None) -> None:
        """Take the listed adapters (default: all merged) back out of the base weight."""
        names = list(self.merged_adapters if names is None else names)
        for name in names:
            self._require(name)
            if name not in self.merged_adapters:
                raise AdapterError(f"adapter {name!r} is not merged, so it cannot be unmerged; merged: "
                                   f"{self.merged_adapters or 'none'}")
        w = self.base_layer.weight
        remaining = [n for n in self.merged_adapters if n not in names]
        if not remaining and self._weight_backup is not None:
            w.copy_(self._weight_backup)
        else:
            for name in reversed(names):
                w.sub_(self.delta_weight(name).to(w.dtype))
        self.merged_adapters = remaining
        if not remaining:
            self._weight_backup = None

    @torch.no_grad()
    def fold(self, name: str) -> None:
        """Merge adapter ``name`` into the base weight for good and delete it (no backup kept)."""
        self._require(name)
        if name in self.merged_adapters:
            raise AdapterError(f"adapter {name!r} is already merged; unmerge it before folding it")
        if self.merged_adapters:
            raise AdapterError(f"unmerge the merged adapters {self.merged_adapters} before folding {name!r}")
        self._check_finite(name)
        w = self.base_layer.weight
        w.add_(self.delta_weight(name).to(w.dtype))
        self.delete_adapter(name)

    def _check_finite(self, name: str) -> None:
        for part, mod in (("lora_A", self.lora_A[name]), ("lora_B", self.lora_B[name])):
            if not torch.isfinite(mod.weight).all():
                raise AdapterError(f"adapter {name!r} has NaN or inf in {part}; training diverged or the file "
                                   "is corrupt. Delete the adapter (or reload a good copy) and lower the lr")

    def adopt(self, other: "LoRALinear") -> None:
        """Take over the base layer and every adapter of ``other`` (used to upgrade a layer to a subclass)."""
        self.base_layer = other.base_layer
        self.lora_A, self.lora_B, self.lora_dropout = other.lora_A, other.lora_B, other.lora_dropout
        self.lora_config = dict(other.lora_config)
        self.active_adapters = list(other.active_adapters)
        self.merged_adapters = list(other.merged_adapters)
        self._weight_backup = other._weight_backup
        self.train(other.training)

    def extra_repr(self) -> str:
        parts = [f"{n}: r={c.r}, s={c.scaling:g}{' (merged)' if n in self.merged_adapters else ''}"
                 for n, c in self.lora_config.items()]
        return f"adapters=[{'; '.join(parts)}], active={self.active_adapters}"


# ---- finding modules ------------------------------------------------------------------------------
def _linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Full names of the ``nn.Linear`` / :class:`LoRALinear` modules, skipping the insides of LoRA layers."""
    out: dict[str, nn.Module] = {}
    skip: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(s + ".") for s in skip):
            continue
        if isinstance(module, LoRALinear):
            out[name] = module
            skip.append(name)
        elif isinstance(module, nn.Linear):
            out[name] = module
    return out


def _matches(name: str, pattern) -> bool:
    """PEFT's rule: a string is a full-match regex; a list entry matches the name or a dotted suffix of it."""
    if isinstance(pattern, str):
        return re.fullmatch(pattern, name) is not None
    return any(name == t or name.endswith("." + t) for t in pattern)


def _candidates(names: Iterable[str]) -> list[str]:
    short = set()
    for n in names:
        parts = n.split(".")
        short.add(parts[-1])
        if len(parts) > 1:
            short.add(".".join(parts[-2:]))
    return sorted(short)


def find_targets(model: nn.Module, target_modules=ALL_LINEAR, exclude_modules: Sequence[str] = ()) -> list[str]:
    """Full names (in model order) of the ``nn.Linear`` modules of ``model`` the patterns select (PEFT semantics).

    Validated eagerly: a pattern that matches nothing, or matches a module that is not
    an ``nn.Linear``, raises :class:`ConfigError` listing candidate module names.
    """
    linear = _linear_modules(model)
    all_names = [n for n, _ in model.named_modules() if n]
    if not linear:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear module to adapt")
    hint = f"candidate Linear module names: {', '.join(_candidates(linear))}"
    if target_modules == ALL_LINEAR:
        chosen = list(linear)
    elif isinstance(target_modules, str):
        chosen = [n for n in all_names if _matches(n, target_modules)]
        if not chosen:
            raise ConfigError(f"target_modules regex {target_modules!r} matches no module of "
                              f"{type(model).__name__} (it must match the whole dotted name); {hint}")
    else:
        chosen = []
        for t in target_modules:
            hit = [n for n in all_names if _matches(n, [t])]
            if not hit:
                close = difflib.get_close_matches(t.split(".")[-1], _candidates(linear), n=3)
                extra = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ConfigError(f"target module {t!r} matches no module of {type(model).__name__}{extra} "
                                  f"({hint})")
            chosen += [n for n in hit if n not in chosen]
    order = {n: i for i, n in enumerate(all_names)}
    chosen = sorted(chosen, key=order.__getitem__)  # model order, whatever the pattern order
    inside = [n for n in chosen if n not in linear and any(n.startswith(k + ".") for k in linear)]
    chosen = [n for n in chosen if n not in inside]
    bad = [n for n in chosen if n not in linear]
    if bad:
        kinds = ", ".join(f"{n} ({type(model.get_submodule(n)).__name__})" for n in bad[:5])
        raise ConfigError(f"LoRA adapts nn.Linear modules only, but target_modules also selects {kinds}; "
                          f"name the Linear layers inside them instead ({hint})")
    if exclude_modules:
        chosen = [n for n in chosen if not _matches(n, list(exclude_modules))]
    if not chosen:
        raise ConfigError(f"exclude_modules {list(exclude_modules)} removes every module target_modules selected")
    return chosen


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The :class:`LoRALinear` modules of ``model`` by full name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def adapter_names(model: nn.Module) -> list[str]:
    """Names of all adapters in ``model``, in order of first appearance."""
    seen: list[str] = []
    for layer in lora_layers(model).values():
        seen += [n for n in layer.adapter_names if n not in seen]
    return seen


def _layers_with(model: nn.Module, name: str) -> dict[str, LoRALinear]:
    layers = {n: m for n, m in lora_layers(model).items() if name in m.lora_config}
    if not layers:
        raise AdapterError(f"the model has no adapter named {name!r}; it has {adapter_names(model) or 'none'}")
    return layers


# ---- injection ------------------------------------------------------------------------------------
def inject_adapter(model: nn.Module, config: LoRAConfig, adapter_name: str = "default", *,
                   generator: torch.Generator | None = None, seed: int | None = None,
                   freeze_base: bool = True, activate: bool = True) -> list[str]:
    """Add adapter ``adapter_name`` to every ``nn.Linear`` of ``model`` that ``config`` targets (in place).

    Each target is replaced by ``config.layer_class`` wrapping the original module
    (a layer that already holds adapters is upgraded to a subclass when needed). All
    checks run before anything changes: unmatched patterns, a rank larger than
    ``min(in, out)`` of a target, a name already used. ``seed`` (or ``generator``) makes
    the initialisation and the dropout masks reproducible. ``freeze_base`` sets ``requires_grad=False`` on every
    parameter of ``model`` except the new adapter's (unfreeze a head yourself);
    ``activate`` makes the new adapter the only active one. Returns the adapted module names.
    """
    if not isinstance(config, LoRAConfig):
        raise ConfigError(f"config must be a LoRAConfig, got {type(config).__name__}")
    if not isinstance(adapter_name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", adapter_name):
        raise ConfigError(f"adapter name must be letters, digits, '_' or '-', got {adapter_name!r}")
    names = find_targets(model, config.target_modules, config.exclude_modules)
    _check_ranks(model, names, config.r)
    cls = config.layer_class
    for n in names:
        m = model.get_submodule(n)
        if isinstance(m, LoRALinear):
            if adapter_name in m.lora_config:
                raise AdapterError(f"layer {n!r} already has an adapter named {adapter_name!r}; pick another "
                                   "name or delete_adapter() the old one")
            if not isinstance(m, cls) and not issubclass(cls, type(m)):
                raise ConfigError(f"layer {n!r} holds {type(m).__name__} adapters; a {config.kind!r} adapter "
                                  f"needs {cls.__name__}, which cannot run them. Use a separate model copy")
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    for n in names:
        m = model.get_submodule(n)
        if not isinstance(m, LoRALinear):
            new = cls(m)
            new.train(m.training)
            _set_submodule(model, n, new)
            m = new
        elif not isinstance(m, cls):
            new = cls(m.base_layer)
            new.adopt(m)
            _set_submodule(model, n, new)
            m = new
        m.add_adapter(adapter_name, config, generator)
    if freeze_base:
        keep = {id(p) for p in adapter_parameters(model, adapter_name)}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    if activate:
        set_active_adapters(model, [adapter_name])
    return names


def _check_ranks(model: nn.Module, names: Sequence[str], r: int) -> None:
    for n in names:
        m = model.get_submodule(n)
        limit = min(m.in_features, m.out_features)
        if r > limit:
            raise ConfigError(f"rank r={r} is larger than layer {n!r} allows: min(in={m.in_features}, "
                              f"out={m.out_features}) = {limit}; choose r <= {limit} or exclude that layer")


def wrap_targets(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Replace the targeted ``nn.Linear`` modules by ``config.layer_class`` layers holding no adapter yet.

    The model computes the same function; its state-dict keys become those of an
    adapted model (``<module>.base_layer.weight``), so a model whose adapters come and
    go keeps one layout. Returns the wrapped module names.
    """
    names = find_targets(model, config.target_modules, config.exclude_modules)
    _check_ranks(model, names, config.r)
    cls = config.layer_class
    for n in names:
        m = model.get_submodule(n)
        if not isinstance(m, LoRALinear):
            new = cls(m)
            new.train(m.training)
            _set_submodule(model, n, new)
        elif not isinstance(m, cls):
            if not issubclass(cls, type(m)):
                raise ConfigError(f"layer {n!r} holds {type(m).__name__} adapters, which {cls.__name__} cannot run")
            new = cls(m.base_layer)
            new.adopt(m)
            _set_submodule(model, n, new)
    return names


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def adapter_parameters(model: nn.Module, adapter_name: str) -> list[nn.Parameter]:
    """The ``A`` and ``B`` parameters of adapter ``adapter_name`` (plus any a subclass registers under it)."""
    params: list[nn.Parameter] = []
    for layer in _layers_with(model, adapter_name).values():
        params += [layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight]
        params += list(getattr(layer, "extra_adapter_parameters", lambda _n: [])(adapter_name))
    return params


def set_active_adapters(model: nn.Module, names: Sequence[str] | str) -> None:
    """Make exactly ``names`` active in every LoRA layer (``[]`` disables all unmerged adapters)."""
    names = [names] if isinstance(names, str) else list(names)
    known = adapter_names(model)
    missing = [n for n in names if n not in known]
    if missing:
        raise AdapterError(f"unknown adapter(s) {missing}; the model has {known or 'none'}")
    for layer in lora_layers(model).values():
        layer.active_adapters = [n for n in names if n in layer.lora_config]


def active_adapters(model: nn.Module) -> list[str]:
    """Adapters active in at least one layer."""
    out: list[str] = []
    for layer in lora_layers(model).values():
        out += [n for n in layer.active_adapters if n not in out]
    return out


@contextlib.contextmanager
def adapters_disabled(model: nn.Module):
    """Context in which the model computes its base function (no merged adapter may be present)."""
    layers = lora_layers(model)
    merged = sorted({n for m in layers.values() for n in m.merged_adapters})
    if merged:
        raise AdapterError(f"adapters {merged} are merged into the base weights; unmerge_adapters() first")
    saved = {k: list(m.active_adapters) for k, m in layers.items()}
    try:
        for m in layers.values():
            m.active_adapters = []
        yield model
    finally:
        for k, m in layers.items():
            m.active_adapters = saved[k]


def merge_adapters(model: nn.Module, names: Sequence[str] | str | None = None, *, exact: bool = True) -> None:
    """Merge adapters (default: the active ones) into the base weights of every layer holding them.

    Merging an adapter twice or one with NaN/inf weights raises :class:`AdapterError`
    before any layer changes.
    """
    layers = lora_layers(model)
    if not layers:
        raise AdapterError("the model has no LoRA layers to merge")
    names = active_adapters(model) if names is None else ([names] if isinstance(names, str) else list(names))
    for name in names:
        for lname, layer in _layers_with(model, name).items():
            if name in layer.merged_adapters:
                raise AdapterError(f"adapter {name!r} is already merged (layer {lname!r}); merging twice would add "
                                   "its update twice. Call unmerge_adapters() first")
            try:
                layer._check_finite(name)
            except AdapterError as e:
                raise AdapterError(f"layer {lname!r}: {e}") from None
    for layer in layers.values():
        here = [n for n in names if n in layer.lora_config]
        if here:
            layer.merge(here, exact=exact)


def unmerge_adapters(model: nn.Module, names: Sequence[str] | str | None = None) -> None:
    """Take adapters (default: all merged ones) back out of the base weights."""
    for layer in lora_layers(model).values():
        here = layer.merged_adapters if names is None else \
            [n for n in ([names] if isinstance(names, str) else names) if n in layer.merged_adapters]
        if here:
            layer.unmerge(list(here))


def fold_adapter(model: nn.Module, name: str) -> None:
    """Merge adapter ``name`` into the base weights for good and delete it (sequential LoRA)."""
    layers = _layers_with(model, name)
    for lname, layer in layers.items():
        try:
            layer._check_finite(name)
        except AdapterError as e:
            raise AdapterError(f"layer {lname!r}: {e}") from None
    for layer in layers.values():
        layer.fold(name)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` from every layer (it must not be merged)."""
    for layer in _layers_with(model, name).values():
        layer.delete_adapter(name)


def unload(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every LoRA layer by its plain ``nn.Linear`` (after merging the active adapters if ``merge``)."""
    if merge:
        for layer in lora_layers(model).values():
            todo = [n for n in layer.active_adapters if n not in layer.merged_adapters]
            if todo:
                layer.merge(todo, exact=False)
    for name, layer in list(lora_layers(model).items()):
        if not merge and layer.merged_adapters:
            layer.unmerge()
        layer._weight_backup = None
        _set_submodule(model, name, layer.base_layer)
    return model


def check_finite(model: nn.Module, name: str | None = None) -> None:
    """Raise :class:`AdapterError` naming the layer if an adapter's weights hold NaN or inf."""
    for lname, layer in lora_layers(model).items():
        for n in ([name] if name is not None and name in layer.lora_config else
                  ([] if name is not None else layer.adapter_names)):
            try:
                layer._check_finite(n)
            except AdapterError as e:
                raise AdapterError(f"layer {lname!r}: {e}") from None


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameters of a model, and the parameters of each adapter."""

    trainable: int
    total: int
    adapters: dict = field(default_factory=dict)

    @property
    def trainable_fraction(self) -> float:
        """trainable / total."""
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        per = ", ".join(f"{k}: {v:,}" for k, v in self.adapters.items())
        return (f"trainable params: {self.trainable:,} || all params: {self.total:,} || "
                f"trainable%: {100 * self.trainable_fraction:.4f}" + (f" || adapters: {per}" if per else ""))


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable / total parameter counts (each parameter once) and the size of every adapter."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    total = sum(p.numel() for p in seen.values())
    per = {n: sum(p.numel() for p in adapter_parameters(model, n)) for n in adapter_names(model)}
    return ParameterCount(trainable, total, per)


__all__ = ["LoRAConfig", "LoRALinear", "SeededDropout", "AdapterError", "ParameterCount", "ALL_LINEAR", "ADAPTER_KINDS",
           "LORA_INITS", "register_lora_init", "register_adapter_kind", "find_targets", "inject_adapter",
           "wrap_targets",
           "lora_layers", "adapter_names", "adapter_parameters", "set_active_adapters", "active_adapters",
           "adapters_disabled", "merge_adapters", "unmerge_adapters", "fold_adapter", "delete_adapter", "unload",
           "check_finite", "count_parameters"]
