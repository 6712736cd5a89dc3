"""OrthoHash (Hoe, Ng, Nwe, Chan, Wang, Chan: "One Loss for All: Deep Hashing with a Single Cosine
Similarity based Learning Objective", NeurIPS 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashpa.losses.base import MetricLoss
from hashpa.losses.centers import hash_centers


class OrthoHashLoss(MetricLoss):
    r"""Cross-entropy over the scaled cosine similarities of each relaxed code u to the classes'
    orthogonal codewords c_y, with an additive margin on the true class (the paper's equation 7):

    .. math::
        -\log\frac{e^{s(\cos(u, c_y) - m)}}{e^{s(\cos(u, c_y) - m)} + \sum_{j \ne y} e^{s\cos(u, c_j)}}

    with the paper's s = 8 and m = 0.2. The codewords are fixed ``hash_centers`` (Hadamard rows:
    orthogonal whenever there are at most as many classes as bits), kept as a buffer. With
    multi-hot labels (hashpa's form) every label gets the margin, and the loss is the mean over a
    sample's labels of their cross-entropy terms.
    """

    multi_label = True

    def __init__(self, num_classes: int, bits: int, scale: float = 8.0, margin: float = 0.2, seed: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.scale, self.margin = scale, margin
        self.register_buffer("codewords", hash_centers(num_classes, bits, seed))

    def compute(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.normalize(codes, dim=1) @ F.normalize(self.codewords.to(codes.dtype), dim=1).T
        positive = labels.to(codes.dtype) if labels.ndim == 2 else F.one_hot(labels, self.num_classes).to(codes.dtype)
        logits = self.scale * (cosine - self.margin * positive)
        if labels.ndim == 1:
            return F.cross_entropy(logits, labels)
        log_probability = F.log_softmax(logits, dim=1)
        return (-(log_probability * positive).sum(dim=1) / positive.sum(dim=1).clamp(min=1)).mean()
