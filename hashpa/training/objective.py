"""The training objective: a metric loss on the float embedding plus the hash-code terms."""

from __future__ import annotations

import torch
from torch import nn

from hashpa.distributed import gather_with_grad
from hashpa.losses.decorrelation import DecorrelationLoss
from hashpa.losses.distillation import SimilarityDistillationLoss
from hashpa.losses.quantization import QuantizationLoss
from hashpa.losses.registry import build_loss
from hashpa.methods import HASHPA
from hashpa.models.hashing_model import ModelOutput
from hashpa.runs.config import TrainConfig
from hashpa.training.relaxation import relaxed_codes


def build_objective(config: TrainConfig, num_classes: int) -> nn.Module:
    """The objective of `config.method`: hashpa's (``HashingObjective``) or a deep-hashing method's own loss alone."""
    if config.method == HASHPA:
        return HashingObjective(config, num_classes)
    from hashpa.training.method_objective import MethodObjective

    return MethodObjective(config, num_classes)


class HashingObjective(nn.Module):
    """total = metric(embeddings) + code_weight * code_metric(tanh(h)) (Proxy Anchor with code proxies by default)
    + quantization_weight * quantisation + distill_weight * distillation(codes <- embeddings)
    + decorrelation_weight * bit decorrelation. Terms with weight 0 are not computed."""

    def __init__(self, config: TrainConfig, num_classes: int):
        super().__init__()
        self.config = config
        self.metric = build_loss(config.loss, num_classes, config.model.dim, alpha=config.alpha, margin=config.margin,
                                 proxies_per_class=config.proxies_per_class)
        self.code_metric = build_loss(config.code_loss, num_classes, config.model.bits, alpha=config.code_alpha, margin=config.margin)
        self.quantization = QuantizationLoss()
        self.distillation = SimilarityDistillationLoss(config.distill_temperature)
        self.decorrelation = DecorrelationLoss()
        self.binary_fraction = 1.0
        self.progress = 0.0  # the fraction of training done (read by method objectives' schedules; hashpa's terms have none)

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns the loss to minimise and each weighted term's unweighted value (detached)."""
        embeddings = gather_with_grad(output.embeddings)
        logits = gather_with_grad(output.hash_logits)
        relaxed, c = torch.tanh(logits), self.config
        codes = relaxed_codes(logits, c.code_relaxation, self.binary_fraction)
        labels = gather_with_grad(labels.to(torch.uint8)).bool() if labels.dtype == torch.bool else gather_with_grad(labels)  # gloo gathers no bool
        terms = {"float": (1.0, lambda: self.metric(embeddings, labels))}
        terms["codes"] = (c.code_weight, lambda: self.code_metric(codes, labels))
        terms["quantization"] = (c.quantization_weight, lambda: self.quantization(relaxed))
        terms["distillation"] = (c.distill_weight, lambda: self.distillation(codes, embeddings))
        terms["decorrelation"] = (c.decorrelation_weight, lambda: self.decorrelation(relaxed))
        total, parts = embeddings.new_zeros(()), {}
        for name, (weight, compute) in terms.items():
            if weight:
                value = compute()
                total = total + weight * value
                parts[name] = value.detach()
        parts["total"] = total.detach()
        return total, parts
