"""Running under ``torchrun``: the process group, the rank's share of every batch, and the global
batch the losses see.

Without torchrun (no WORLD_SIZE in the environment, or 1) everything is the single-process case.
Under it, ``start()`` joins the process group torchrun describes (``gloo`` on CPU, ``nccl`` on GPU),
each rank reads its contiguous part of every global batch, and ``gather_with_grad`` gives every
rank the whole batch's embeddings, its gradient flowing back to the rank that computed each part.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import warnings
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main_process() -> bool:
    return rank() == 0


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[torch.device | None]:
    """Join torchrun's process group for the duration (when launched by it and not joined yet);
    yields this rank's device for `device` "auto" (cuda:LOCAL_RANK with a GPU), else None."""
    if not launched() or active():
        yield None
        return
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    backend = "nccl" if cuda else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))  # rank 0 evaluates and writes while the others wait
    if not is_main_process():
        logging.getLogger("hashpa").setLevel(logging.WARNING)  # one voice: rank 0's
    log.info("torchrun: %d processes (%s), this is rank %d", world_size(), backend, rank())
    try:
        yield torch.device("cuda", local) if cuda else None
        dist.barrier()
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """This rank's GPU under torchrun (cuda:LOCAL_RANK) when `device` is CUDA; `device` otherwise."""
    if launched() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def average_gradients(parameters) -> None:
    """Average the gradients of `parameters` over every process, as DistributedDataParallel does
    (for steps that back-propagate outside its forward)."""
    if world_size() == 1:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.copy_(global_total(parameter.grad) / world_size())


def global_total(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over every process (no gradient)."""
    if world_size() == 1:
        return x
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else x.device  # nccl reduces on the GPU
    total = x.to(on)
    dist.all_reduce(total)
    return total.to(x.device)


def rank_share(batch: Sequence[int]) -> list[int]:
    """This rank's contiguous part of a global batch of indices (all of it in one process)."""
    size, me = world_size(), rank()
    part = len(batch) // size
    return list(batch[me * part : (me + 1) * part])


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` [B, ...] from every process along dim 0, in rank order: the global batch.

    The gather is torch.distributed.nn's, so each rank's part gets back the gradient of every
    rank's loss (the same global loss on each): world_size times the gradient of one loss, which
    DistributedDataParallel's averaging over the ranks turns into exactly that gradient.
    """
    if world_size() == 1:
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of a private module
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x.contiguous()), dim=0)


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over every process, differentiable (torch.distributed.nn's all_reduce)."""
    if world_size() == 1:
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(x)


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank's parameters and buffers of `module` rank 0's."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def broadcast_object(value):
    """Rank 0's `value` on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
