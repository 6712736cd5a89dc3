"""Pooling and the two heads on top of a backbone: the float embedding and the hash code."""

from __future__ import annotations

import torch
from torch import nn

from hashpa.distributed import global_sum, world_size
from hashpa.errors import HashpaError
from hashpa.models.config import HASH_NORMS, POOLINGS


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
    the batch. With ``project=False`` there is no projection: h is the input itself, normalised
    (``bits`` must equal ``in_features``: ModelConfig.check says so), so the codes are the signs of the centred input.

    `norm` (``ModelConfig.hash_norm``): "standardize" is that normalisation; "batchnorm" adds
    BatchNorm's learnt scale and shift (OrthoHash's hash layer); "none" leaves the plain linear layer
    (the hash layer of CSQ, HashNet, DPSH and GreedyHash).
    """

    def __init__(self, in_features: int, bits: int, project: bool = True, norm: str = "standardize"):
        super().__init__()
        if norm not in HASH_NORMS:
            raise HashpaError(f"unknown hash layer normalisation {norm!r}; choose one of {', '.join(HASH_NORMS)}")
        self.in_features, self.projects = in_features, project
        self.linear = nn.Linear(in_features, bits) if project else nn.Identity()
        self.norm = nn.Identity() if norm == "none" else nn.BatchNorm1d(bits, affine=norm == "batchnorm")
        self.across_ranks = False  # set by the training step under torchrun: every rank's batch is one batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if self.training and self.across_ranks and world_size() > 1 and isinstance(self.norm, nn.BatchNorm1d):
            normalised = _normalised_over_ranks(h, self.norm)
            return normalised if self.norm.weight is None else normalised * self.norm.weight + self.norm.bias
        return self.norm(h)


def _normalised_over_ranks(h: torch.Tensor, norm: nn.BatchNorm1d) -> torch.Tensor:
    """BatchNorm1d's training step with the statistics of the whole batch across processes (torchrun),
    so that each bit is centred as in one process: SyncBatchNorm does this on GPUs only. Updates
    `norm`'s running statistics as BatchNorm1d does (momentum, unbiased variance)."""
    wide = h.double()  # one pass over the batch: in float64, so that E[h^2] - E[h]^2 loses nothing float32 would keep
    moments = global_sum(torch.cat([wide.sum(dim=0), (wide * wide).sum(dim=0), wide.new_full((1,), len(h))]))
    bits = h.shape[1]
    count = moments[-1]
    mean = moments[:bits] / count
    variance = (moments[bits : 2 * bits] / count - mean * mean).clamp(min=0)
    mean, variance, count = mean.to(h.dtype), variance.to(h.dtype), count.item()
    with torch.no_grad():
        norm.num_batches_tracked += 1
        norm.running_mean.mul_(1 - norm.momentum).add_(norm.momentum * mean.detach())
        norm.running_var.mul_(1 - norm.momentum).add_(norm.momentum * variance.detach() * count / (count - 1))
    return (h - mean) / torch.sqrt(variance + norm.eps)
