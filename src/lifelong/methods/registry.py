"""Method registry: ``@register("name")`` on a learner class; :func:`make_learner` builds one."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from lifelong.errors import unknown_name
from lifelong.methods.config import MethodConfig, build_config

if TYPE_CHECKING:
    from lifelong.methods.base import Learner

_Cls = TypeVar("_Cls", bound=type)

METHODS: dict[str, type] = {}


def register(name: str) -> Callable[[_Cls], _Cls]:
    """Class decorator registering a learner under ``name``.

    The class must define ``config_class`` (a :class:`MethodConfig` subclass) and
    accept ``(config, seed=0)`` in its constructor.
    """

    def wrap(cls: _Cls) -> _Cls:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        if not (isinstance(getattr(cls, "config_class", None), type) and issubclass(cls.config_class, MethodConfig)):
            raise TypeError(f"{cls.__name__} must define config_class, a MethodConfig subclass")
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def _discover() -> None:
    """Import every module of :mod:`lifelong.methods` so their ``@register`` calls run."""
    import lifelong.methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("config", "registry") and not info.name.startswith("base"):
            importlib.import_module(f"lifelong.methods.{info.name}")


def list_methods() -> list[str]:
    """Names accepted by :func:`make_learner`."""
    _discover()
    return sorted(METHODS)


def get_method(name: str) -> type:
    """The learner class registered as ``name``."""
    _discover()
    if name not in METHODS:
        raise unknown_name("method", name, METHODS)
    return METHODS[name]


def make_learner(
    name: str, config: dict | MethodConfig | None = None, seed: int = 0, data_kind: str | None = None
) -> Learner:
    """Build the learner ``name`` with ``config`` overrides (dict or config object) and ``seed``.

    ``data_kind`` (``pixels``, ``embeddings``, ``tokens``, ``vectors``; see
    :func:`lifelong.data.kinds.dataset_kind`) picks the method's defaults for that kind of data.
    """
    cls = get_method(name)
    return cls(build_config(cls.config_class, config, data_kind=data_kind), seed=seed)


# ---- what a method reads ------------------------------------------------------------------------------
#: The kinds of input a learner can read, in words. A learner class declares the kinds it reads in the class
#: attribute ``inputs`` (kind -> the config setting that selects it, "" when always), like scikit-learn's
#: estimator tags; a class reading more than one kind says which one a config selects in ``reads(config)``.
INPUT_KINDS = {"features": "feature vectors", "tokens": "token ids"}
_DEFAULT_INPUTS = {"features": ""}


def method_inputs(cls: type) -> dict[str, str]:
    """The input kinds the learner class ``cls`` can read, each with the setting that selects it."""
    return dict(getattr(cls, "inputs", _DEFAULT_INPUTS))


def input_kind(cls: type, config: MethodConfig) -> str:
    """The kind of input (``"features"`` or ``"tokens"``) that ``cls`` built with ``config`` reads."""
    kinds = method_inputs(cls)
    if len(kinds) == 1:
        return next(iter(kinds))
    return cls.reads(config)


def check_inputs(
    kind: str,
    configs: dict[str, MethodConfig],
    *,
    data_fix: dict[str, str],
    set_prefix: str = "",
    error: type[Exception] | None = None,
) -> None:
    """Refuse methods that cannot read the data's ``kind`` of input, with one message that names the fix.

    ``configs`` maps method name -> config. ``data_fix`` maps each kind to the words that
    load the data as that kind (``--set data.representation=tokens`` on the command line,
    ``representation='tokens'`` in Python); ``set_prefix`` is put before a method setting
    (``--set method.`` on the command line). The message lists the methods that fit.
    """
    from lifelong.errors import ConfigError

    error = error or ConfigError
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r}; one of {', '.join(INPUT_KINDS)}")
    reads = {m: input_kind(get_method(m), c) for m, c in configs.items()}
    wrong = [m for m, k in reads.items() if k != kind]
    if not wrong:
        return

    def named(m: str) -> str:
        setting = method_inputs(get_method(m)).get(reads[m], "")
        return f"{m} ({setting})" if setting else m

    have = [k for k in INPUT_KINDS if k != kind][0]
    verb = "reads" if len(wrong) == 1 else "read"
    fits = []
    for m in list_methods():
        setting = method_inputs(METHODS[m]).get(kind)
        if setting is not None:
            fits.append(f"{m} with {set_prefix}{setting}" if setting else m)
    if len(fits) > 8:  # most methods read feature vectors: name a few
        fits = fits[:4] + [f"... ({len(fits)} in all, see `lifelong list methods`)"]
    raise error(
        f"the data holds {INPUT_KINDS[kind]}, but {', '.join(named(m) for m in wrong)} {verb} "
        f"{INPUT_KINDS[have]}; {data_fix[have]}, or use a method that reads {INPUT_KINDS[kind]}: "
        f"{', '.join(fits)}"
    )
