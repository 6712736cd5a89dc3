"""Proxy-NCA loss (Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies", ICCV 2017)."""

from __future__ import annotations

import torch

from hashpa.errors import HashpaError
from hashpa.losses.base import ProxyLoss


class ProxyNCALoss(ProxyLoss):
    r"""The paper's equation, averaged over the batch, with d the squared Euclidean distance of the
    L2-normalised embedding and proxies (d = 2 - 2 cos) multiplied by ``scale``:

    .. math::
        -\log\frac{e^{-s\,d(x, p_y)}}{\sum_{z \ne y} e^{-s\,d(x, p_z)}}

    The positive proxy is left out of the denominator, as in the original paper. ``scale`` = 32 is
    the setting the Proxy Anchor paper's code used for this baseline.
    """

    def __init__(self, num_classes: int, embedding_dim: int, scale: float = 32.0):
        if num_classes < 2:
            raise HashpaError(f"Proxy-NCA needs at least 2 classes, got {num_classes}")
        super().__init__(num_classes, embedding_dim)
        self.scale = scale

    def loss_from_cosine(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = -self.scale * (2.0 - 2.0 * cosine)
        positive = labels[:, None] == torch.arange(cosine.shape[1], device=cosine.device)[None, :]
        positive_logit = logits.gather(1, labels[:, None].long()).squeeze(1)
        negatives = logits.masked_fill(positive, float("-inf"))
        return (torch.logsumexp(negatives, dim=1) - positive_logit).mean()
