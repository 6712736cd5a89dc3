"""The metric losses by command-line name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashpa.errors import HashpaError

if TYPE_CHECKING:
    from hashpa.losses.base import MetricLoss

LOSS_NAMES = ("proxy_anchor", "proxy_nca", "ms")


def build_loss(name: str, num_classes: int, embedding_dim: int, alpha: float = 32.0, margin: float = 0.1) -> MetricLoss:
    """A metric loss by its command-line name; ``alpha``/``margin`` apply to Proxy Anchor only."""
    from hashpa.losses.multi_similarity import MultiSimilarityLoss
    from hashpa.losses.proxy_anchor import ProxyAnchorLoss
    from hashpa.losses.proxy_nca import ProxyNCALoss

    if name == "proxy_anchor":
        return ProxyAnchorLoss(num_classes, embedding_dim, alpha=alpha, margin=margin)
    if name == "proxy_nca":
        return ProxyNCALoss(num_classes, embedding_dim)
    if name == "ms":
        return MultiSimilarityLoss()
    raise HashpaError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
