"""Method registry: ``@register("name")`` on a learner class; :func:`make_learner` builds one."""

from __future__ import annotations

import importlib
import pkgutil

from lifelong.errors import unknown_name
from lifelong.methods.config import MethodConfig, build_config

METHODS: dict[str, type] = {}


def register(name: str):
    """Class decorator registering a learner under ``name``.

    The class must define ``config_class`` (a :class:`MethodConfig` subclass) and
    accept ``(config, seed=0)`` in its constructor.
    """

    def wrap(cls):
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        if not (isinstance(getattr(cls, "config_class", None), type)
                and issubclass(cls.config_class, MethodConfig)):
            raise TypeError(f"{cls.__name__} must define config_class, a MethodConfig subclass")
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def _discover() -> None:
    """Import every module of :mod:`lifelong.methods` so their ``@register`` calls run."""
    import lifelong.methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("base", "config", "registry"):
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


def make_learner(name: str, config: dict | MethodConfig | None = None, seed: int = 0):
    """Build the learner ``name`` with ``config`` overrides (dict or config object) and ``seed``."""
    cls = get_method(name)
    return cls(build_config(cls.config_class, config), seed=seed)
