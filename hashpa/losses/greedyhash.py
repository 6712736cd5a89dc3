"""GreedyHash (Su, Zhang, Wu, Tian: "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding
in CNN", NeurIPS 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashpa.losses.base import MetricLoss


class _SignStraightThrough(torch.autograd.Function):
    """sign(h) forward (+1 where h > 0, else -1: the bit rule); the gradient passed through unchanged
    (the paper's greedy principle)."""

    @staticmethod
    def forward(ctx, h):
        return torch.where(h > 0, 1.0, -1.0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class GreedyHashLoss(MetricLoss):
    r"""The codes b = sign(h) themselves feed a linear classifier W (no bias), trained by cross-entropy
    with the gradient of b passed straight to h, plus the penalty that draws |h| to 1 (the paper's
    equations 5 and 8):

    .. math::
        \mathrm{CE}(W b, y) + \alpha\,\mathrm{mean}\,\big|\,|h| - 1\,\big|^3

    with α = 0.1 and the cube (p = 3). The classifier ``classifier`` is trained with the network.
    """

    def __init__(self, num_classes: int, bits: int, alpha: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.alpha = alpha
        self.classifier = nn.Linear(bits, num_classes, bias=False)

    def compute(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        codes = _SignStraightThrough.apply(h)
        logits = F.linear(codes, self.classifier.weight.to(h.dtype))
        return F.cross_entropy(logits, labels) + self.alpha * (h.abs() - 1).abs().pow(3).mean()
