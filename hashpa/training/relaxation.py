"""What the code losses see of the hash pre-activations h: the relaxed codes tanh(h), or signed codes
through a straight-through estimator, reached gradually over training.

``"ste"`` gives tanh(h) + fraction * (sign(h) - tanh(h)) in the forward pass and tanh's gradient in the
backward pass: at fraction 0 the relaxed codes, at fraction 1 exactly the +-1 codes that become the
bits (sign(0) is -1, as zero maps to bit 0), so the code losses judge the codes the index will hold.
"""

from __future__ import annotations

import torch


def relaxed_codes(hash_logits: torch.Tensor, relaxation: str = "tanh", binary_fraction: float = 1.0) -> torch.Tensor:
    """hash_logits float [B, bits] -> codes in [-1, 1] [B, bits] for the code losses (see the module)."""
    relaxed = torch.tanh(hash_logits)
    if relaxation == "tanh" or binary_fraction == 0:
        return relaxed
    signs = torch.where(hash_logits > 0, 1.0, -1.0).to(relaxed.dtype)
    return relaxed + binary_fraction * (signs - relaxed).detach()


def binary_fraction(epoch: int, epochs: int) -> float:
    """How far epoch `epoch` (0-based) of `epochs` has moved from the relaxed to the signed codes:
    0 in the first epoch, 1 in the last, linearly between."""
    return 1.0 if epochs <= 1 else min(1.0, epoch / (epochs - 1))
