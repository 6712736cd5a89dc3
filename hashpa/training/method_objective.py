"""A deep-hashing method's training objective: its own loss on the hash layer's outputs, alone
(``hashpa.methods``); hashpa's design is ``objective.HashingObjective``."""

from __future__ import annotations

import torch
from torch import nn

from hashpa.distributed import gather_with_grad
from hashpa.losses.registry import build_loss
from hashpa.methods import method
from hashpa.models.hashing_model import ModelOutput
from hashpa.runs.config import TrainConfig


class MethodObjective(nn.Module):
    """total = the method's loss of its view of the hash layer's outputs h (tanh(h), or h itself).
    ``code_metric`` is that loss (the trainer clips its parameters with the hash head's); ``progress``,
    the fraction of training done, reaches losses with a schedule of their own (HashNet's continuation)."""

    def __init__(self, config: TrainConfig, num_classes: int):
        super().__init__()
        self.method = method(config.method)
        self.code_metric = build_loss(self.method.loss, num_classes, config.model.bits)
        self.binary_fraction = 1.0
        self.progress = 0.0

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns the loss to minimise and its value by name (detached)."""
        logits = gather_with_grad(output.hash_logits)
        labels = gather_with_grad(labels.to(torch.uint8)).bool() if labels.dtype == torch.bool else gather_with_grad(labels)  # gloo gathers no bool
        if hasattr(self.code_metric, "set_progress"):
            self.code_metric.set_progress(self.progress)
        seen = torch.tanh(logits) if self.method.relaxation == "tanh" else logits
        total = self.code_metric(seen, labels)
        return total, {"codes": total.detach(), "total": total.detach()}
