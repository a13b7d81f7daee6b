"""Vision backbones: the loader against stand-in ``timm`` / ``torchvision`` modules, real libraries where installed.

timm and torchvision cannot be installed beside this torch, so the loader is also tested with small fake
modules put into ``sys.modules`` (their ``create_model`` / ``get_model`` build a tiny convolutional net)
and with real checkpoints of such a net saved in the test (safetensors and ``.pth``).
"""

import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

from lifelong.encoders.vision import load_vision_backbone
from lifelong.errors import ConfigError

WIDTH = 4  # the tiny net's pooled feature size


class TinyNet(nn.Module):
    """A small image classifier shaped like the libraries' models: conv features, pooling, a head.

    ``head="fc"``: one Linear (ResNet; ``num_classes=0`` gives identity, as timm does);
    ``"classifier"``: a Sequential ending in a Linear (MobileNetV3); ``"none"``: no head at all.
    """

    def __init__(self, num_classes=5, head="fc", width=WIDTH):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = width
        if head == "fc":
            self.fc = nn.Linear(width, num_classes) if num_classes else nn.Identity()
        elif head == "classifier":
            self.classifier = nn.Sequential(
                nn.Linear(width, 7), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(7, num_classes)
            )
        self.head_kind = head

    def pooled(self, x):
        return self.pool(torch.relu(self.conv(x))).flatten(1)

    def forward(self, x):
        h = self.pooled(x)
        return {"fc": lambda: self.fc(h), "classifier": lambda: self.classifier(h), "none": lambda: h}[self.head_kind]()


@pytest.fixture
def fake_timm(monkeypatch):
    """A stand-in ``timm`` in ``sys.modules``; returns the log of its calls."""
    calls = []

    def create_model(name, pretrained=False, num_classes=1000):
        calls.append(("create_model", name, pretrained, num_classes))
        if name != "tiny":
            raise RuntimeError(f"Unknown model ({name})")
        torch.manual_seed(0)
        return TinyNet(num_classes=num_classes)

    def resolve_data_config(args, model=None):
        calls.append(("resolve_data_config", args, model))
        return {"input_size": (3, 8, 8), "interpolation": "bilinear"}

    def create_transform(**cfg):
        calls.append(("create_transform", cfg))
        return ("timm-transform", cfg)

    timm = types.ModuleType("timm")
    timm.create_model = create_model
    timm.data = types.SimpleNamespace(resolve_data_config=resolve_data_config, create_transform=create_transform)
    monkeypatch.setitem(sys.modules, "timm", timm)
    return calls


class _Weights:
    """Like a torchvision weights enum member: it knows its preprocessing."""

    def transforms(self):
        return "tv-transform"


WEIGHTS = _Weights()


@pytest.fixture
def fake_torchvision(monkeypatch):
    """A stand-in ``torchvision`` in ``sys.modules`` with models tinyfc, tinyseq and tinyheadless."""
    calls = []
    models = {"tinyfc": "fc", "tinyseq": "classifier", "tinyheadless": "none"}

    def get_model_weights(name):
        calls.append(("get_model_weights", name))
        return types.SimpleNamespace(DEFAULT=WEIGHTS)

    def get_model(name, weights=None):
        calls.append(("get_model", name, weights))
        if name not in models:
            raise ValueError(f"Unknown model {name}")
        torch.manual_seed(0)
        return TinyNet(head=models[name])

    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace(get_model_weights=get_model_weights, get_model=get_model)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    return calls


def _save(model, path):
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return path


def test_bad_names_raise_config_errors():
    with pytest.raises(ConfigError, match="timm:<model>"):
        load_vision_backbone("keras:resnet50")
    with pytest.raises(ConfigError, match="timm:<model>"):
        load_vision_backbone("torchvision:")


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_missing_timm_names_the_install_command():
    with pytest.raises(ConfigError, match="pip install timm"):
        load_vision_backbone("timm:resnet18", pretrained=False)


def test_timm_model_is_created_headless_frozen_with_its_transform(fake_timm):
    enc = load_vision_backbone("timm:tiny")
    assert fake_timm[0] == ("create_model", "tiny", True, 0)  # the library's weights, no classifier
    assert fake_timm[1] == ("resolve_data_config", {}, enc.backbone)
    assert enc.transform == ("timm-transform", {"input_size": (3, 8, 8), "interpolation": "bilinear"})
    assert enc.name == "timm:tiny" and enc.out_dim == WIDTH
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    x = torch.randn(5, 3, 8, 8)
    feats = enc.encode(x, batch_size=2)
    assert feats.shape == (5, WIDTH) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, enc.backbone.pooled(x))  # the pooled features, batch by batch
    assert enc.encode(x[:0]).shape == (0, WIDTH)
    bare = load_vision_backbone("tiny", pretrained=False, freeze=False)  # a bare name means timm
    assert fake_timm[-3][:4] == ("create_model", "tiny", False, 0)
    assert bare.training and all(p.requires_grad for p in bare.parameters())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_checkpoint_weights_are_loaded_instead_of_the_download(fake_timm, tmp_path, suffix):
    torch.manual_seed(1)
    trained = TinyNet(num_classes=5)  # a classifier: its head's weights are in the file and ignored
    path = _save(trained, tmp_path / f"tiny{suffix}")
    enc = load_vision_backbone("timm:tiny", checkpoint=path)
    assert fake_timm[0] == ("create_model", "tiny", False, 0)  # pretrained is not asked for: no download
    assert torch.equal(enc.backbone.conv.weight, trained.conv.weight)
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(enc.encode(x), trained.pooled(x))


def test_a_checkpoint_that_does_not_fit_and_an_unknown_model_are_config_errors(fake_timm, tmp_path):
    torch.manual_seed(1)
    state = {f"body.{k}": v for k, v in TinyNet().state_dict().items()}
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match="does not fit the backbone: missing"):
        load_vision_backbone("timm:tiny", checkpoint=path)
    with pytest.raises(ConfigError, match="timm has no model 'nope'"):
        load_vision_backbone("timm:nope")


def test_torchvision_linear_head_is_dropped_and_weights_give_the_transform(fake_torchvision):
    enc = load_vision_backbone("torchvision:tinyfc")
    assert fake_torchvision == [("get_model_weights", "tinyfc"), ("get_model", "tinyfc", WEIGHTS)]
    assert isinstance(enc.backbone.fc, nn.Identity) and enc.out_dim == WIDTH
    assert enc.transform == "tv-transform" and enc.name == "torchvision:tinyfc"
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(enc.encode(x), enc.backbone.pooled(x))
    plain = load_vision_backbone("torchvision:tinyfc", pretrained=False)
    assert fake_torchvision[-1] == ("get_model", "tinyfc", None) and plain.transform is None


def test_torchvision_sequential_head_keeps_all_but_its_last_linear(fake_torchvision):
    enc = load_vision_backbone("torchvision:tinyseq", pretrained=False)
    head = enc.backbone.classifier
    assert isinstance(head[0], nn.Linear) and isinstance(head[3], nn.Identity)
    assert enc.out_dim == 7  # the penultimate features
    x = torch.randn(3, 3, 8, 8)
    feats = enc.encode(x)
    assert feats.shape == (3, 7)
    torch.testing.assert_close(feats, head[1](head[0](enc.backbone.pooled(x))))  # dropout is off in eval


def test_torchvision_checkpoint_and_errors(fake_torchvision, tmp_path):
    torch.manual_seed(2)
    trained = TinyNet(head="classifier")
    enc = load_vision_backbone("torchvision:tinyseq", checkpoint=_save(trained, tmp_path / "seq.safetensors"))
    assert fake_torchvision[-1] == ("get_model", "tinyseq", None)  # local weights: no download
    assert torch.equal(enc.backbone.classifier[0].weight, trained.classifier[0].weight)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(enc.encode(x), trained.classifier[1](trained.classifier[0](trained.pooled(x))))
    no_head = {k: v for k, v in TinyNet().state_dict().items() if not k.startswith("fc.")}
    torch.save(no_head, tmp_path / "nohead.pth")  # a backbone saved without its classifier fits too
    load_vision_backbone("torchvision:tinyfc", checkpoint=tmp_path / "nohead.pth")
    with pytest.raises(ConfigError, match="torchvision has no model 'nope'"):
        load_vision_backbone("torchvision:nope", pretrained=False)
    with pytest.raises(ConfigError, match="cannot find the classifier"):
        load_vision_backbone("torchvision:tinyheadless", pretrained=False)


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
