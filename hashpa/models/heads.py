"""Pooling and the two heads on top of a backbone: the float embedding and the hash code."""

from __future__ import annotations

import torch
from torch import nn

from hashpa.errors import HashpaError
from hashpa.models.config import POOLINGS


class GlobalPool(nn.Module):
    """[B, C, h, w] -> [B, C]. "avgmax" is average + max pooling, as in the Proxy Anchor code."""

    def __init__(self, kind: str = "avgmax"):
        super().__init__()
        if kind not in POOLINGS:
            raise HashpaError(f"unknown pooling {kind!r}; choose one of {', '.join(POOLINGS)}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        if self.kind == "avgmax":
            pooled = pooled + x.amax(dim=(2, 3))
        return pooled


class EmbeddingHead(nn.Linear):
    """Linear projection to the embedding (L2-normalised by the model); kaiming-normal init."""

    def __init__(self, in_features: int, dim: int):
        super().__init__(in_features, dim)
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        nn.init.zeros_(self.bias)


class HashHead(nn.Module):
    """Linear projection to `bits` pre-activations h, batch-normalised without affine parameters.

    The normalisation keeps every bit centred over the data (so each fires for about half of
    the images, the most informative split) and at unit scale, where tanh(h) is neither
    saturated nor linear. In eval mode it uses running statistics, so codes do not depend on
    the batch.
    """

    def __init__(self, in_features: int, bits: int):
        super().__init__()
        self.linear = nn.Linear(in_features, bits)
        self.norm = nn.BatchNorm1d(bits, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))
