"""What the processes of a training run share under torchrun: the step DistributedDataParallel wraps,
the run directory's lock held by rank 0, the result rank 0 returns."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from hashpa.devices import autocast
from hashpa.distributed import is_main_process, world_size
from hashpa.fileio import folder_lock
from hashpa.training.objective import HashingObjective


class TrainingStep(torch.nn.Module):
    """The network and the objective as one module: under torchrun, DistributedDataParallel wraps it,
    so that the proxies are kept identical on every rank as the network is."""

    def __init__(self, network: torch.nn.Module, forward, objective: HashingObjective):
        super().__init__()
        self.network, self.objective = network, objective
        self._forward = forward  # the network, or torch.compile of it

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor, freeze_backbone: bool, detach_hash_input: bool, amp: bool, device: torch.device):
        self.network.hash_head.across_ranks = True  # its batch statistics over the global batch (only here: rank 0 alone runs the code stage)
        try:
            with autocast(device, amp):
                output = self._forward(inputs, freeze_backbone=freeze_backbone, detach_hash_input=detach_hash_input)
        finally:
            self.network.hash_head.across_ranks = False
        return self.objective(output, labels)


def across_ranks(step: TrainingStep, device: torch.device, warmup_epochs: int) -> torch.nn.Module:
    """`step` as every rank runs it: under torchrun wrapped in DistributedDataParallel (gradients averaged
    over the ranks; the backbone frozen by a warm-up leaves some parameters unused), else itself."""
    if world_size() == 1:
        return step
    return torch.nn.parallel.DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                                     find_unused_parameters=warmup_epochs > 0)


def on_main(result):
    """`result` on rank 0 (and in a single process), None on the other ranks."""
    return result if is_main_process() else None


@contextlib.contextmanager
def main_lock(folder: Path):
    """The run directory's lock, held by rank 0 for all (the other ranks never write in it)."""
    with folder_lock(folder, "hashpa train") if is_main_process() else contextlib.nullcontext():
        yield
