"""Multi-Similarity loss (Wang et al., "Multi-Similarity Loss with General Pair Weighting", CVPR 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashpa.losses.base import MetricLoss, log1p_sum_exp


class MultiSimilarityLoss(MetricLoss):
    r"""Pairs are mined as in the paper (margin ``epsilon``), then for each anchor i with mined
    positives P_i and negatives N_i (the anchor itself excluded):

    .. math::
        \frac{1}{\alpha}\log\Big(1+\sum_{k\in P_i}e^{-\alpha(S_{ik}-\lambda)}\Big)
        + \frac{1}{\beta}\log\Big(1+\sum_{k\in N_i}e^{\beta(S_{ik}-\lambda)}\Big)

    summed over the anchors with both sets non-empty and divided by the batch size (the authors'
    code). Defaults alpha=2, beta=50, lambda (base)=0.5, epsilon=0.1 are the Proxy Anchor paper's
    settings for this baseline.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, epsilon: float = 0.1):
        super().__init__()
        self.alpha, self.beta, self.base, self.epsilon = alpha, beta, base, epsilon

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.normalize(embeddings, dim=1)
        similarity = x @ x.T
        same = labels[:, None] == labels[None, :]
        self_pair = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive, negative = same & ~self_pair, ~same

        sim = similarity.detach()
        hardest_positive = sim.masked_fill(~positive, float("inf")).amin(dim=1, keepdim=True)
        hardest_negative = sim.masked_fill(~negative, float("-inf")).amax(dim=1, keepdim=True)
        mined_negative = negative & (sim + self.epsilon > hardest_positive)
        mined_positive = positive & (sim - self.epsilon < hardest_negative)
        valid = mined_positive.any(dim=1) & mined_negative.any(dim=1)

        positive_term = log1p_sum_exp(-self.alpha * (similarity - self.base), mined_positive, dim=1) / self.alpha
        negative_term = log1p_sum_exp(self.beta * (similarity - self.base), mined_negative, dim=1) / self.beta
        return ((positive_term + negative_term) * valid).sum() / len(labels)
