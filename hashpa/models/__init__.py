"""Models: the backbone registry, pooling, the embedding and hash heads, offline weight loading."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".config": "HASH_SOURCES POOLINGS ModelConfig",
    ".backbones": "Backbone Preprocessing backbone_names build_backbone register_backbone",
    ".hashing_model": "HashingModel ModelOutput",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
