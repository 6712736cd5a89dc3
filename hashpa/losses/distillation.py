"""Similarity distillation from the float embedding into the relaxed hash codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimilarityDistillationLoss(nn.Module):
    """KL divergence between each sample's softmax over its batch neighbours under the teacher
    (float embedding, no gradient) and under the student (relaxed codes), both by cosine divided
    by `temperature`, the sample itself excluded. Teaches the codes the float model's ranking."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self_pair = torch.eye(len(student), dtype=torch.bool, device=student.device)

        def log_softmax_neighbours(x: torch.Tensor) -> torch.Tensor:
            x = F.normalize(x.float(), dim=1)
            return F.log_softmax((x @ x.T / self.temperature).masked_fill(self_pair, float("-inf")), dim=1)

        target = log_softmax_neighbours(teacher.detach())
        prediction = log_softmax_neighbours(student)
        terms = target.exp() * (target - prediction)
        return terms.masked_fill(self_pair, 0.0).sum(dim=1).mean()
