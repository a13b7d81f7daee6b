"""An optimizer spec: a registered optimizer and its optional components, in one string.

``"sgd"`` is the optimizer alone; ``"sgd+norm_test"`` adds AdAdaGrad's adaptive batch size
(AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient Methods, arXiv 2402.11215) grown
by the norm test, and ``"adagradnorm+inner_product_test:max_batch_size=512"`` the inner-product
test with an option. Any gradient method takes one as ``optimizer`` (``--set method.optimizer=...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lifelong.errors import ConfigError

if TYPE_CHECKING:
    from lifelong.optim.batch_size import BatchSizeController

#: batch-size tests -> their options and defaults (``max_batch_size`` caps the growing batch)
BATCH_TESTS: dict[str, dict] = {
    "norm_test": {"eta": 0.1, "max_batch_size": 1024},
    "inner_product_test": {"theta": 0.5, "nu": 1.0, "max_batch_size": 1024},
}


@dataclass(frozen=True)
class OptimizerSpec:
    """A parsed spec: the optimizer's registered ``name`` and an optional batch-size test with its options."""

    name: str
    batch_test: str | None = None
    options: dict = field(default_factory=dict)

    def batch_controller(self, batch_size: int, n: int) -> BatchSizeController | None:
        """The batch-size controller starting at ``batch_size`` for ``n`` examples (None without a test).

        The cap is ``max_batch_size``, at most ``n`` and at least ``batch_size``.
        """
        if self.batch_test is None:
            return None
        from lifelong.optim.batch_size import InnerProductTestBatchController, NormTestBatchController

        opts = dict(self.options)
        cap = max(batch_size, min(int(opts.pop("max_batch_size")), n))
        cls = NormTestBatchController if self.batch_test == "norm_test" else InnerProductTestBatchController
        return cls(batch_size, cap, **opts)


def parse_optimizer_spec(spec: str) -> OptimizerSpec:
    """Parse ``name[+test[:key=value,...]]`` (see the module docstring); one clear error for a bad spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"optimizer must be a name like sgd or sgd+norm_test, got {spec!r}")
    name, _, component = spec.strip().partition("+")
    if not component:
        return OptimizerSpec(name)
    test, _, raw = component.partition(":")
    if test not in BATCH_TESTS:
        raise ConfigError(
            f"unknown optimizer component {test!r} in {spec!r}; components: "
            f"{', '.join(BATCH_TESTS)} (e.g. sgd+norm_test:eta=0.5)"
        )
    options = dict(BATCH_TESTS[test])
    for item in filter(None, raw.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in options:
            raise ConfigError(f"{test} takes {', '.join(f'{k}=...' for k in options)}; got {item!r} in {spec!r}")
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{test}: {key} must be a number > 0, got {value!r} in {spec!r}")
        if key == "max_batch_size" and v != int(v):
            raise ConfigError(f"{test}: max_batch_size must be an integer, got {value!r} in {spec!r}")
        options[key] = int(v) if key == "max_batch_size" else float(v)
    return OptimizerSpec(name, test, options)
