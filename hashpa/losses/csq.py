"""Central Similarity Quantization (Yuan, Wang, Zhang, Tay, Xie, Shao, Feng: "Central Similarity
Quantization for Efficient Image and Video Retrieval", CVPR 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashpa.losses.base import MetricLoss
from hashpa.losses.centers import hash_centers


class CSQLoss(MetricLoss):
    r"""Each relaxed code u in (-1, 1)^K is pulled to its class's hash centre c in {-1, 1}^K by the
    binary cross-entropy of the bits, plus the quantisation term (the paper's equation 8, and its
    code's defaults):

    .. math::
        \frac{1}{K}\sum_k \mathrm{BCE}\Big(\frac{u_k+1}{2}, \frac{c_k+1}{2}\Big) + \lambda\,\frac{1}{K}\sum_k (|u_k| - 1)^2

    with λ = 1e-4. The centres are fixed (``hash_centers``), kept as a buffer. A multi-label
    sample's centre is the sign of the sum of its labels' centres, a fixed random bit where that
    sum is 0 (the paper's section 3.2, as its code does).
    """

    multi_label = True

    def __init__(self, num_classes: int, bits: int, quantization: float = 1e-4, seed: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.quantization = quantization
        self.register_buffer("centers", hash_centers(num_classes, bits, seed))
        generator = torch.Generator().manual_seed(seed + 1)
        self.register_buffer("tie_breaker", torch.randint(0, 2, (bits,), generator=generator).float() * 2 - 1)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The centre in {-1, +1}^bits of each sample: its class's, or for multi-labels the sign of their sum."""
        if labels.ndim == 1:
            return self.centers[labels]
        summed = labels.to(self.centers.dtype) @ self.centers
        return torch.where(summed == 0, self.tie_breaker, torch.sign(summed))

    def compute(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = (self.targets(labels).to(codes.dtype) + 1) / 2
        probability = ((codes + 1) / 2).clamp(1e-7, 1 - 1e-7)
        central = F.binary_cross_entropy(probability, target)
        return central + self.quantization * (codes.abs() - 1).pow(2).mean()
