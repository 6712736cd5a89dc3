"""Which pairs of a batch are similar: the pairwise losses' one rule."""

from __future__ import annotations

import torch


def pair_similarity(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(similar, pairs), both bool [B, B]: `similar` where two samples share a class (class indices
    [B] or multi-hot labels bool [B, C]); `pairs` every i != j (a sample is no pair with itself)."""
    if labels.ndim == 2:
        hot = labels.float()
        similar = (hot @ hot.T) > 0
    else:
        similar = labels[:, None] == labels[None, :]
    pairs = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return similar, pairs
