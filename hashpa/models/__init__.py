"""Models: the backbone registry, pooling, the embedding and hash heads, offline weight loading."""

from hashpa.models.backbones import Backbone, Preprocessing, backbone_names, build_backbone, register_backbone
from hashpa.models.hashing_model import HASH_SOURCES, HashingModel, ModelConfig, ModelOutput

__all__ = [
    "HASH_SOURCES",
    "Backbone",
    "HashingModel",
    "ModelConfig",
    "ModelOutput",
    "Preprocessing",
    "backbone_names",
    "build_backbone",
    "register_backbone",
]
