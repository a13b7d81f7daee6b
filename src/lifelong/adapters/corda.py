"""CorDA: context-oriented decomposition initialisation of LoRA adapters.

CorDA: Context-Oriented Decomposition Adaptation of Large Language Models (arXiv 2406.05223). The SVD of
``W C`` (``C`` the input covariance of a few context samples) splits every adapted weight exactly; the adapter
takes the ``r`` smallest components (KPA, ``mode="kpa"``: keep knowledge) or the ``r`` largest (IPA,
``mode="ipa"``: preview the new task), and the frozen base weight becomes the residual, so the model computes
the original function before training. Use :func:`corda_inject`; a saved CorDA adapter needs the residual
base weights saved alongside (as HF PEFT's CorDA).

Notes: docs/papers/corda.md
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lifelong.adapters.lora import (
    LoRAConfig,
    LoRALinear,
    find_targets,
    inject_adapter,
    register_adapter_kind,
    register_lora_init,
)
from lifelong.errors import ConfigError, DataError

MODES = ("kpa", "ipa")


@register_adapter_kind
@dataclass
class CorDAConfig(LoRAConfig):
    """CorDA adapter settings: LoRA fields, ``mode`` (``"kpa"`` smallest / ``"ipa"`` largest components), ``damp``.

    ``init`` is ``"corda"``; the covariance comes from :func:`corda_inject`.
    """

    init: str = "corda"
    mode: str = "kpa"
    damp: float = 0.01

    kind: ClassVar[str] = "corda"

    def validate(self) -> None:
        super().validate()
        if self.mode not in MODES:
            raise ConfigError(
                f"CorDA mode must be 'kpa' (knowledge-preserved) or 'ipa' (instruction-previewed), got {self.mode!r}"
            )
        if not (float(self.damp) > 0 and float(self.damp) < 1e6):
            raise ConfigError(f"CorDA damp must be a positive number (paper: 0.01), got {self.damp!r}")


def damped_inverse(
    cov: torch.Tensor, damp: float = 0.01, tol: float = 0.05, max_doublings: int = 40
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C', C'^{-1})`` with ``C' = C + d mean(diag C) I``, ``d`` doubled until ``||C' C'^{-1} - I||_F < tol`` (CorDA).

    Raises :class:`DataError` for a non-finite or all-zero covariance (no usable inputs).
    """
    cov = cov.double()
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
        raise DataError(f"CorDA covariance must be a square non-empty matrix, got shape {tuple(cov.shape)}")
    if not torch.isfinite(cov).all():
        raise DataError("CorDA covariance holds NaN or inf; the calibration inputs contain NaN/inf. Clean the data")
    mean_diag = float(torch.diagonal(cov).mean())
    if not mean_diag > 0:
        raise DataError(
            "CorDA covariance is zero (every calibration input to this layer is 0), so W C has no "
            "orientation; give calibration samples that activate the layer"
        )
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    d = float(damp)
    for _ in range(max_doublings):
        fixed = cov + d * mean_diag * eye
        inv = torch.linalg.inv(fixed)
        if float(torch.linalg.norm(fixed @ inv - eye)) < tol:
            return fixed, inv
        d *= 2
    raise DataError(
        "CorDA covariance stays numerically singular after damping; give more (and more varied) calibration samples"
    )


def corda_factors(
    weight: torch.Tensor, cov: torch.Tensor, r: int, mode: str = "kpa", damp: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U_r, S_r, V'_r)`` of CorDA's decomposition ``W = U S V'^T`` (float64); smallest r for KPA, largest for IPA."""
    if mode not in MODES:
        raise ConfigError(f"CorDA mode must be one of {MODES}, got {mode!r}")
    w = weight.detach().double()
    if not torch.isfinite(w).all():
        raise DataError("the layer's weight holds NaN or inf; CorDA cannot decompose it")
    limit = min(w.shape)
    if not 1 <= r <= limit:
        raise ConfigError(f"CorDA rank r={r} must lie in [1, min(out, in) = {limit}]")
    fixed, inv = damped_inverse(cov, damp)
    u, s, vh = torch.linalg.svd(w @ fixed, full_matrices=False)
    v = (vh @ inv).T  # V' = C'^{-1} V (in x k)
    sl = slice(0, r) if mode == "ipa" else slice(limit - r, limit)
    return u[:, sl], s[sl], v[:, sl]


@register_lora_init("corda")
def _init_corda(layer: LoRALinear, name: str, generator: torch.Generator | None) -> None:
    """CorDA init: A = S^{1/2} V'^T, B = U S^{1/2} / s, base weight := W - s B A (exact reconstruction)."""
    cfg = layer.lora_config[name]
    base = layer.base_layer
    cov = getattr(base, "corda_covariance", None)
    if cov is None:
        raise ConfigError(
            "CorDA init needs the layer's input covariance; create CorDA adapters with "
            "lifelong.adapters.corda.corda_inject(model, config, inputs)"
        )
    mode = getattr(cfg, "mode", "kpa")
    damp = getattr(cfg, "damp", 0.01)
    u, s, v = corda_factors(base.weight, cov, cfg.r, mode, damp)
    sq = s.sqrt()
    scale = layer.scaling(name)
    a = sq[:, None] * v.T
    b = u * sq[None, :] / scale
    w = base.weight
    layer.lora_A[name].weight.copy_(a.to(w.dtype))
    layer.lora_B[name].weight.copy_(b.to(w.dtype))
    w.copy_((w.double() - scale * (b @ a)).to(w.dtype))


@torch.no_grad()
def collect_covariances(
    model: nn.Module, names: list[str], inputs: torch.Tensor, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """``X^T X / n`` (float64) of the ``n`` input rows reaching each named linear module as ``model`` runs.

    The mean over the calibration rows, as the official CorDA code (``act_aware_utils``) keeps it: a constant
    factor leaves ``B A`` unchanged but shifts the balance between the factors ``B`` and ``A``.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim == 0 or inputs.shape[0] == 0:
        raise DataError("CorDA needs at least one calibration sample; got an empty input tensor")
    if not torch.isfinite(inputs).all():
        raise DataError("CorDA calibration inputs contain NaN or inf; clean the data first")
    covs: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}
    handles = []

    def make_hook(key: str):
        def hook(_mod: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = args[0].detach().double().reshape(-1, args[0].shape[-1])
            c = x.T @ x
            covs[key] = covs[key] + c if key in covs else c
            rows[key] = rows.get(key, 0) + x.shape[0]

        return hook

    for n in names:
        handles.append(model.get_submodule(n).register_forward_hook(make_hook(n)))
    was_training = model.training
    model.eval()
    try:
        for s in range(0, inputs.shape[0], batch_size):
            model(inputs[s : s + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: c / rows[k] for k, c in covs.items()}


def corda_inject(
    model: nn.Module,
    config: CorDAConfig,
    inputs: torch.Tensor | None,
    adapter_name: str = "default",
    **inject_kwargs,
) -> list[str]:
    """Add a CorDA adapter to ``model``: covariances from ``inputs`` (knowledge data for KPA, task data for IPA).

    Runs ``model`` on ``inputs`` once with hooks on the targeted linear modules, then
    :func:`inject_adapter` with the ``"corda"`` init. Returns the adapted module names.
    ``inputs=None`` is the no-context ablation: the covariance is the identity, so the split is
    the plain SVD of ``W`` (largest ``r``: PiSSA's init; smallest ``r``: MiLoRA's).
    """
    if not isinstance(config, CorDAConfig):
        raise ConfigError(f"corda_inject needs a CorDAConfig, got {type(config).__name__}")
    names = find_targets(model, config.target_modules, config.exclude_modules)
    for n in names:
        m = model.get_submodule(n)
        if config.r > min(m.in_features, m.out_features):
            raise ConfigError(
                f"rank r={config.r} is larger than layer {n!r} allows: min(in={m.in_features}, "
                f"out={m.out_features}); choose r <= {min(m.in_features, m.out_features)}"
            )
    if inputs is None:
        covs = {
            n: torch.eye(model.get_submodule(n).in_features, dtype=torch.float64) for n in names
        }  # no context: plain SVD of W
    else:
        covs = collect_covariances(model, names, inputs)
    bases = {}
    for n in names:
        m = model.get_submodule(n)
        base = m.base_layer if isinstance(m, LoRALinear) else m
        damped_inverse(covs[n], config.damp)  # validate all layers before anything changes
        bases[n] = base
    try:
        for n, base in bases.items():
            base.corda_covariance = covs[n]
        return inject_adapter(model, config, adapter_name, **inject_kwargs)
    finally:
        for base in bases.values():
            if hasattr(base, "corda_covariance"):
                del base.corda_covariance


__all__ = ["CorDAConfig", "corda_inject", "corda_factors", "damped_inverse", "collect_covariances"]
