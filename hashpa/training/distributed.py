"""Process-group helpers, so the trainer runs unchanged under torchrun (DDP) later.

Without an initialised process group everything is the single-process case.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return rank() == 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` [B, ...] from every process along dim 0; gradients flow to the local slice.

    Proxy losses need every process's embeddings: a proxy's positive and negative sets are taken
    over the global batch. Each process then holds the same global loss but back-propagates only
    through its own slice, so summing the backbone gradients over processes gives the full gradient
    (DDP averages them: scale by world_size there), while the proxies, outside DDP, already get the
    full gradient on every process.
    """
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank()] = x
    return torch.cat(parts, dim=0)
