"""Optional vision backbones: real timm / torchvision loading where installed, skipped where not."""

import importlib.util

import pytest
import torch

from lifelong.encoders.vision import load_vision_backbone
from lifelong.errors import ConfigError


def test_bad_names_raise_config_errors():
    with pytest.raises(ConfigError, match="timm:<model>"):
        load_vision_backbone("keras:resnet50")


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_missing_timm_names_the_install_command():
    with pytest.raises(ConfigError, match="pip install timm"):
        load_vision_backbone("timm:resnet18", pretrained=False)


def test_timm_backbone_gives_pooled_features():
    pytest.importorskip("timm")
    enc = load_vision_backbone("timm:resnet18", pretrained=False)
    x = enc.encode(torch.randn(3, 3, 64, 64), batch_size=2)
    assert x.shape == (3, enc.out_dim) and enc.out_dim == 512
    assert not any(p.requires_grad for p in enc.parameters())


def test_torchvision_backbone_drops_its_classifier():
    pytest.importorskip("torchvision")
    enc = load_vision_backbone("torchvision:resnet18", pretrained=False)
    assert enc.encode(torch.randn(2, 3, 64, 64)).shape == (2, 512)
    mob = load_vision_backbone("torchvision:mobilenet_v3_small", pretrained=False)
    assert mob.encode(torch.randn(2, 3, 64, 64)).shape == (2, mob.out_dim)
