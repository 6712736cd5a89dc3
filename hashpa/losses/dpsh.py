"""DPSH (Li, Wang, Kang: "Feature Learning based Deep Supervised Hashing with Pairwise Labels", IJCAI 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashpa.losses.base import MetricLoss
from hashpa.losses.pairs import pair_similarity


class DPSHLoss(MetricLoss):
    r"""The negative log-likelihood of the pairwise labels under θ_ij = ½⟨u_i, u_j⟩ of the hash
    layer's real outputs u, plus the quantisation term that pulls u to its signs b (the paper's
    equation 4), each averaged (over the pairs i != j of the batch, over the code entries):

    .. math::
        \mathrm{mean}_{i \ne j}\big(\log(1 + e^{\theta_{ij}}) - s_{ij}\theta_{ij}\big) + \eta\,\mathrm{mean}\,(b - u)^2

    with η = 0.1 and b = sign(u) (+1 where u > 0, the bit rule). The pairs are those of the batch,
    not of the whole training set as in the paper's algorithm.
    """

    multi_label = True

    def __init__(self, num_classes: int, bits: int, eta: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.eta = eta

    def compute(self, u: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        similar, pairs = pair_similarity(labels)
        theta = 0.5 * (u @ u.T)
        likelihood = F.softplus(theta) - similar.to(theta.dtype) * theta
        signs = torch.where(u > 0, 1.0, -1.0).to(u.dtype)
        return likelihood[pairs].mean() + self.eta * (signs - u).pow(2).mean()
