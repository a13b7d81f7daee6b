"""LoRA over a whole model: find target modules, inject, activate, merge, fold, unload, count.

Injection replaces the targeted ``nn.Linear`` modules of any model in place (a
transformers encoder, a timm ViT, an MLP) by :class:`~lifelong.adapters.lora.layer.LoRALinear`
and never forks a model file; target patterns follow HF PEFT (``peft.tuners.lora.model``).
Every check runs before the model changes. Merging adds ``s * B A`` to the base weight
(one matrix product per layer); with ``exact=True`` (default) the original weight is kept
so that unmerging every merged adapter restores it bit for bit.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lifelong.adapters.lora.config import ALL_LINEAR, LoRAConfig
from lifelong.adapters.lora.layer import LoRALinear
from lifelong.errors import AdapterError, ConfigError


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


def _matches(name: str, pattern: str | Iterable[str]) -> bool:
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


def find_targets(
    model: nn.Module, target_modules: str | Sequence[str] = ALL_LINEAR, exclude_modules: Sequence[str] = ()
) -> list[str]:
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
            raise ConfigError(
                f"target_modules regex {target_modules!r} matches no module of "
                f"{type(model).__name__} (it must match the whole dotted name); {hint}"
            )
    else:
        chosen = []
        for t in target_modules:
            hit = [n for n in all_names if _matches(n, [t])]
            if not hit:
                close = difflib.get_close_matches(t.split(".")[-1], _candidates(linear), n=3)
                extra = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ConfigError(f"target module {t!r} matches no module of {type(model).__name__}{extra} ({hint})")
            chosen += [n for n in hit if n not in chosen]
    order = {n: i for i, n in enumerate(all_names)}
    chosen = sorted(chosen, key=order.__getitem__)  # model order, whatever the pattern order
    inside = [n for n in chosen if n not in linear and any(n.startswith(k + ".") for k in linear)]
    chosen = [n for n in chosen if n not in inside]
    bad = [n for n in chosen if n not in linear]
    if bad:
        kinds = ", ".join(f"{n} ({type(model.get_submodule(n)).__name__})" for n in bad[:5])
        raise ConfigError(
            f"LoRA adapts nn.Linear modules only, but target_modules also selects {kinds}; "
            f"name the Linear layers inside them instead ({hint})"
        )
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
def inject_adapter(
    model: nn.Module,
    config: LoRAConfig,
    adapter_name: str = "default",
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    freeze_base: bool = True,
    activate: bool = True,
) -> list[str]:
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
                raise AdapterError(
                    f"layer {n!r} already has an adapter named {adapter_name!r}; pick another "
                    "name or delete_adapter() the old one"
                )
            if not isinstance(m, cls) and not issubclass(cls, type(m)):
                raise ConfigError(
                    f"layer {n!r} holds {type(m).__name__} adapters; a {config.kind!r} adapter "
                    f"needs {cls.__name__}, which cannot run them. Use a separate model copy"
                )
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
            raise ConfigError(
                f"rank r={r} is larger than layer {n!r} allows: min(in={m.in_features}, "
                f"out={m.out_features}) = {limit}; choose r <= {limit} or exclude that layer"
            )


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
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
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
                raise AdapterError(
                    f"adapter {name!r} is already merged (layer {lname!r}); merging twice would add "
                    "its update twice. Call unmerge_adapters() first"
                )
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
        here = (
            layer.merged_adapters
            if names is None
            else [n for n in ([names] if isinstance(names, str) else names) if n in layer.merged_adapters]
        )
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
        for n in (
            [name]
            if name is not None and name in layer.lora_config
            else ([] if name is not None else layer.adapter_names)
        ):
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
        return (
            f"trainable params: {self.trainable:,} || all params: {self.total:,} || "
            f"trainable%: {100 * self.trainable_fraction:.4f}" + (f" || adapters: {per}" if per else "")
        )


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable / total parameter counts (each parameter once) and the size of every adapter."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    total = sum(p.numel() for p in seen.values())
    per = {n: sum(p.numel() for p in adapter_parameters(model, n)) for n in adapter_names(model)}
    return ParameterCount(trainable, total, per)


__all__ = [
    "find_targets",
    "lora_layers",
    "adapter_names",
    "inject_adapter",
    "wrap_targets",
    "adapter_parameters",
    "set_active_adapters",
    "active_adapters",
    "adapters_disabled",
    "merge_adapters",
    "unmerge_adapters",
    "fold_adapter",
    "delete_adapter",
    "unload",
    "check_finite",
    "ParameterCount",
    "count_parameters",
]
