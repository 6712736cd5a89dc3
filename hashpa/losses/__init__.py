"""Metric-learning losses and hash-code terms. Each module holds one loss; ``build_loss`` makes a metric loss by name."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".registry": "CODE_LOSS_NAMES LOSS_NAMES METHOD_LOSS_NAMES build_loss",
    ".csq": "CSQLoss",
    ".dpsh": "DPSHLoss",
    ".greedyhash": "GreedyHashLoss",
    ".hashnet": "HashNetLoss",
    ".orthohash": "OrthoHashLoss",
    ".centers": "hash_centers",
    ".base": "MetricLoss ProxyLoss",
    ".decorrelation": "DecorrelationLoss",
    ".distillation": "SimilarityDistillationLoss",
    ".multi_similarity": "MultiSimilarityLoss",
    ".proxy_anchor": "ProxyAnchorLoss",
    ".proxy_nca": "ProxyNCALoss",
    ".quantization": "QuantizationLoss",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
