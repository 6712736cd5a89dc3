"""Models: the backbone registry, pooling, the embedding and hash heads, offline weight loading."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "HASH_SOURCES": ".config",
    "POOLINGS": ".config",
    "ModelConfig": ".config",
    "Backbone": ".backbones",
    "Preprocessing": ".backbones",
    "backbone_names": ".backbones",
    "build_backbone": ".backbones",
    "register_backbone": ".backbones",
    "HashingModel": ".hashing_model",
    "ModelOutput": ".hashing_model",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
