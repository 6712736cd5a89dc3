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
    over the global batch.
    """
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank()] = x
    return torch.cat(parts, dim=0)
