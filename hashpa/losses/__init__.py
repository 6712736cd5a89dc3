"""Metric-learning losses and hash-code terms. Each module holds one loss; ``build_loss`` makes a metric loss by name."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "LOSS_NAMES": ".registry",
    "build_loss": ".registry",
    "MetricLoss": ".base",
    "ProxyLoss": ".base",
    "DecorrelationLoss": ".decorrelation",
    "SimilarityDistillationLoss": ".distillation",
    "MultiSimilarityLoss": ".multi_similarity",
    "ProxyAnchorLoss": ".proxy_anchor",
    "ProxyNCALoss": ".proxy_nca",
    "QuantizationLoss": ".quantization",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
