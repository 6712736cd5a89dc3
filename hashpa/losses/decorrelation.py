"""Bit decorrelation for relaxed hash codes."""

from __future__ import annotations

import torch
from torch import nn


class DecorrelationLoss(nn.Module):
    """Mean squared off-diagonal correlation between the bits of relaxed codes u [B, bits] over
    the batch. Correlated bits repeat each other; pushing correlations to zero spreads the code's
    capacity over independent directions instead of re-encoding the training classes."""

    def forward(self, relaxed_codes: torch.Tensor) -> torch.Tensor:
        u = relaxed_codes.float()
        centred = u - u.mean(dim=0)
        covariance = centred.T @ centred / max(len(u) - 1, 1)
        std = covariance.diagonal().clamp(min=1e-6).sqrt()
        correlation = covariance / std[:, None] / std[None, :]
        bits = correlation.shape[0]
        off_diagonal = correlation - torch.diag(correlation.diagonal())
        return off_diagonal.pow(2).sum() / (bits * (bits - 1))
