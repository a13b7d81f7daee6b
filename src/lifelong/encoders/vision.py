"""Pre-trained image backbones from ``timm`` or ``torchvision`` (optional extras, DESIGN §4).

Neither library is a dependency: install ``lifelong[vision]`` (timm) or torchvision. Models are used as their
libraries ship them, with the classification layer removed so the backbone returns pooled features, as the
frozen-backbone methods (SimpleCIL / APER, SLCA) use them. ``load_vision_backbone("timm:vit_base_patch16_224")``
or ``("torchvision:resnet18")`` returns a :class:`VisionEncoder` (``out_dim``, the preprocessing transform,
batched :meth:`VisionEncoder.encode`). Weights come from the library's own download and cache; offline, pass
``pretrained=False`` or a ``checkpoint`` path (safetensors, or a tensors-only ``.pth``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from lifelong.errors import ConfigError

SOURCES = ("timm", "torchvision")
_TV_HEADS = ("fc", "classifier", "heads", "head")


def _require(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ConfigError(
            f"vision backbones from {module} need the {module} package; install it with `pip install {extra}`"
        ) from e


class VisionEncoder(nn.Module):
    """A headless image backbone: ``forward(images) -> (n, out_dim)`` pooled features.

    Attributes:
        backbone: the library's model with its classifier replaced by identity.
        out_dim: feature dimension.
        transform: the library's preprocessing for PIL images (or ``None``).
        name: ``"<source>:<model name>"``.
    """

    def __init__(self, backbone: nn.Module, out_dim: int, name: str, transform: Callable | None = None):
        super().__init__()
        self.backbone = backbone
        self.out_dim = int(out_dim)
        self.name = name
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).flatten(1)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Features of preprocessed images ``(n, C, H, W)`` in eval mode, in batches, float32."""
        was_training = self.training
        self.eval()
        try:
            out = [self(images[s : s + batch_size]).float() for s in range(0, len(images), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.out_dim)


def _load_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(_TV_HEADS)]  # the classifier we drop
    if unexpected or any(not k.startswith(_TV_HEADS) for k in missing):
        raise ConfigError(
            f"checkpoint {path} does not fit the backbone: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


def _drop_last_linear(model: nn.Module) -> int | None:
    """Replace the last ``nn.Linear`` of the model's classifier attribute by identity; its input size.

    A Linear head is replaced whole; in a Sequential head only the final Linear goes, so
    pooling, norms and hidden layers before it stay (VGG, MobileNetV3: the penultimate
    features).
    """
    for attr in _TV_HEADS:
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Module):
            named = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)]
            if named:
                path, last = named[-1]
                parent = head.get_submodule(path.rpartition(".")[0]) if "." in path else head
                setattr(parent, path.rpartition(".")[2], nn.Identity())
                return last.in_features
    return None


def _timm(name: str, pretrained: bool, checkpoint: str | os.PathLike | None) -> VisionEncoder:
    timm = _require("timm", "timm")
    try:
        model = timm.create_model(name, pretrained=pretrained and checkpoint is None, num_classes=0)
    except RuntimeError as e:  # timm raises RuntimeError for unknown model names
        raise ConfigError(f"timm has no model {name!r} ({e}); see timm.list_models()") from e
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
    cfg = timm.data.resolve_data_config({}, model=model)
    return VisionEncoder(model, model.num_features, f"timm:{name}", timm.data.create_transform(**cfg))


def _torchvision(name: str, pretrained: bool, checkpoint: str | os.PathLike | None) -> VisionEncoder:
    tv = _require("torchvision", "torchvision")
    try:
        weights = tv.models.get_model_weights(name).DEFAULT if pretrained and checkpoint is None else None
        model = tv.models.get_model(name, weights=weights)
    except (ValueError, KeyError) as e:
        raise ConfigError(f"torchvision has no model {name!r}; see torchvision.models.list_models()") from e
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
    out_dim = _drop_last_linear(model)
    if out_dim is None:
        raise ConfigError(
            f"cannot find the classifier of torchvision model {name!r} (looked for "
            f"{', '.join(_TV_HEADS)}); use a timm model instead"
        )
    transform = weights.transforms() if weights is not None else None
    return VisionEncoder(model, out_dim, f"torchvision:{name}", transform)


def load_vision_backbone(
    name: str, *, pretrained: bool = True, checkpoint: str | os.PathLike | None = None, freeze: bool = True
) -> VisionEncoder:
    """A headless pre-trained image backbone by name: ``"timm:<model>"`` or ``"torchvision:<model>"``.

    A bare name means timm. ``freeze=True`` turns off gradients (a frozen feature
    extractor); ``checkpoint`` loads local weights instead of the library download.
    """
    source, _, model = name.partition(":") if ":" in name else ("timm", "", name)
    if source not in SOURCES or not model:
        raise ConfigError(f"vision backbone {name!r}: write 'timm:<model>' or 'torchvision:<model>'")
    enc = _timm(model, pretrained, checkpoint) if source == "timm" else _torchvision(model, pretrained, checkpoint)
    if freeze:
        for p in enc.parameters():
            p.requires_grad_(False)
        enc.eval()
    return enc


__all__ = ["VisionEncoder", "load_vision_backbone"]
