"""HashNet (Cao, Long, Wang, Yu: "HashNet: Deep Learning to Hash by Continuation", ICCV 2017)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hashpa.losses.base import MetricLoss
from hashpa.losses.pairs import pair_similarity


class HashNetLoss(MetricLoss):
    r"""Weighted pairwise cross-entropy of the codes u = tanh(βh) of the hash layer's outputs h, over
    every pair i != j of the batch (the paper's equation 4, as its code computes it):

    .. math::
        \frac{1}{|S_1|}\sum_{s_{ij}=1} \ell_{ij} + \frac{1}{|S_0|}\sum_{s_{ij}=0} \ell_{ij},\qquad
        \ell_{ij} = \log\big(1 + e^{\alpha\langle u_i, u_j\rangle}\big) - s_{ij}\,\alpha\langle u_i, u_j\rangle

    with s_ij = 1 for pairs sharing a class, α = 10 / bits (the code's sigmoid parameter) and the
    weights |S|/|S_1|, |S|/|S_0| that balance similar against dissimilar pairs (a group with no pair
    adds nothing). β is the continuation: ``set_progress(p)`` for the fraction p of training done
    sets β = sqrt(1 + 50 p), the paper's schedule (1 + 0.005 t)^0.5 over its 10,000 iterations t,
    spread over however long training runs.
    """

    multi_label = True

    def __init__(self, num_classes: int, bits: int):
        super().__init__()
        self.num_classes = num_classes
        self.alpha = 10.0 / bits
        self.scale = 1.0

    def set_progress(self, fraction: float) -> None:
        self.scale = math.sqrt(1.0 + 50.0 * fraction)

    def compute(self, hash_outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        u = torch.tanh(self.scale * hash_outputs)
        similar, pairs = pair_similarity(labels)
        logit = self.alpha * (u @ u.T)
        loss = F.softplus(logit) - similar.to(logit.dtype) * logit
        total = logit.new_zeros(())
        for group in (pairs & similar, pairs & ~similar):
            if group.any():
                total = total + loss[group].mean()
        return total
