"""The metric losses by command-line name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashpa.errors import HashpaError

if TYPE_CHECKING:
    from hashpa.losses.base import MetricLoss

LOSS_NAMES = ("proxy_anchor", "proxy_nca", "ms")
# the losses of the relaxed codes: the metric losses, and two deep-hashing ones whose targets are fixed hash centres
CODE_LOSS_NAMES = (*LOSS_NAMES, "csq", "orthohash")
# the deep-hashing methods' own losses on the hash layer's outputs (hashpa.methods): CSQ and OrthoHash, and three that only a method uses
METHOD_LOSS_NAMES = ("csq", "orthohash", "hashnet", "dpsh", "greedyhash")
MULTI_LABEL_LOSSES = ("proxy_anchor", "csq", "orthohash", "hashnet", "dpsh")  # the losses that take multi-hot labels


def build_loss(name: str, num_classes: int, embedding_dim: int, alpha: float = 32.0, margin: float = 0.1, proxies_per_class: int = 1) -> MetricLoss:
    """A loss by its command-line name; ``alpha``, ``margin`` and ``proxies_per_class`` apply to Proxy
    Anchor only (the deep-hashing losses keep their papers' settings, and take the code length as `embedding_dim`)."""
    from hashpa.losses.csq import CSQLoss
    from hashpa.losses.dpsh import DPSHLoss
    from hashpa.losses.greedyhash import GreedyHashLoss
    from hashpa.losses.hashnet import HashNetLoss
    from hashpa.losses.multi_similarity import MultiSimilarityLoss
    from hashpa.losses.orthohash import OrthoHashLoss
    from hashpa.losses.proxy_anchor import ProxyAnchorLoss
    from hashpa.losses.proxy_nca import ProxyNCALoss

    if proxies_per_class > 1 and name != "proxy_anchor":
        raise HashpaError(f"--proxies-per-class applies to Proxy Anchor, not to {name}")
    if name == "proxy_anchor":
        return ProxyAnchorLoss(num_classes, embedding_dim, alpha=alpha, margin=margin, proxies_per_class=proxies_per_class)
    if name == "proxy_nca":
        return ProxyNCALoss(num_classes, embedding_dim)
    if name == "ms":
        return MultiSimilarityLoss()
    if name == "csq":
        return CSQLoss(num_classes, embedding_dim)
    if name == "orthohash":
        return OrthoHashLoss(num_classes, embedding_dim)
    if name == "hashnet":
        return HashNetLoss(num_classes, embedding_dim)
    if name == "dpsh":
        return DPSHLoss(num_classes, embedding_dim)
    if name == "greedyhash":
        return GreedyHashLoss(num_classes, embedding_dim)
    raise HashpaError(f"unknown loss {name!r}; choose one of {', '.join(dict.fromkeys(CODE_LOSS_NAMES + METHOD_LOSS_NAMES))}")
