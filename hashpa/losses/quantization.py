"""Quantisation penalty for relaxed hash codes."""

from __future__ import annotations

import torch
from torch import nn


class QuantizationLoss(nn.Module):
    """Mean of (1 - |u|)^2 over relaxed codes u = tanh(h) in (-1, 1): zero when every entry is +-1,
    so the signs that become the bits lose nothing to quantisation. Computed in float32."""

    def forward(self, relaxed_codes: torch.Tensor) -> torch.Tensor:
        u = relaxed_codes.float()
        return (1.0 - u.abs()).pow(2).mean()
