"""Exact large batches in small memory (gradient caching: Gao, Zhang, Han, Callan, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup", RepL4NLP 2021).

Proxy Anchor's loss is not a sum over samples (each proxy's log-sum-exp runs over the whole batch),
so accumulating the gradients of smaller batches optimises another loss. Instead, one step:

1. runs the backbone over the batch `chunk` images at a time without a graph, keeping only the
   pooled features [B, C];
2. runs the heads and the whole objective (float and code losses) on all B at once, and
   back-propagates it: the heads' and proxies' gradients, and the gradient of the loss with
   respect to every image's features;
3. runs the backbone again, chunk by chunk, with a graph, and back-propagates those gradients.

Peak memory is then one chunk's activations plus the batch's features. The result is the whole
batch's gradient (to float rounding) when the backbone's forward does not depend on the batch:
BatchNorm frozen (``--freeze-bn``, the paper's recipe) or absent; trained BatchNorm normalises each
chunk by the chunk's statistics, as any micro-batching does. The heads always see the whole batch.
"""

from __future__ import annotations

import torch

from hashpa.devices import autocast
from hashpa.training.processes import TrainingStep


def chunked_step(step: TrainingStep, inputs: torch.Tensor, labels: torch.Tensor, chunk: int, freeze_backbone: bool, detach_hash_input: bool,
                 amp: bool, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training step of `step` (network and objective) on the batch, its backbone `chunk` images at
    a time; the gradients are accumulated in the parameters (back-propagation is done here).
    Returns the loss (detached) and its parts, as ``TrainingStep`` does."""
    network, pieces = step.network, torch.split(inputs, chunk)
    with torch.no_grad(), autocast(device, amp):
        features = torch.cat([network.backbone_features(piece) for piece in pieces])
    features = features.detach().requires_grad_(not freeze_backbone)
    network.hash_head.across_ranks = True  # the hash head's batch statistics over the global batch, as in TrainingStep
    try:
        with autocast(device, amp):
            output = network.heads(features, detach_hash_input)
    finally:
        network.hash_head.across_ranks = False
    loss, parts = step.objective(output, labels)
    loss.backward()
    if not freeze_backbone:
        for piece, gradient in zip(pieces, torch.split(features.grad, chunk)):
            with autocast(device, amp):
                recomputed = network.backbone_features(piece)
            recomputed.backward(gradient.to(recomputed.dtype))
    return loss.detach(), parts
