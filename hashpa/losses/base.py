"""Small base classes: input checks and precision handling, so each loss only writes its math."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashpa.errors import HashpaError


class MetricLoss(nn.Module):
    """A loss over a batch of embeddings [B, D] with integer class labels [B] (or, for losses with
    ``multi_label = True``, multi-hot labels bool [B, num_classes]: a sample of several classes).

    Inputs in bf16/fp16 (or produced under autocast) are computed in float32, float64 stays
    float64. Subclasses implement ``compute(embeddings, labels) -> scalar``.
    """

    num_classes: int | None = None
    multi_label = False  # whether compute() takes multi-hot labels too

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check_inputs(embeddings, labels)
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.compute(embeddings.to(dtype), labels)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check_inputs(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        if embeddings.ndim != 2:
            raise HashpaError(f"{type(self).__name__}: embeddings must be [batch, dim], got shape {tuple(embeddings.shape)}")
        if labels.ndim == 2:
            if not self.multi_label:
                raise HashpaError(f"{type(self).__name__} takes one class per sample: labels [batch], got multi-labels {tuple(labels.shape)}")
            if labels.shape != (embeddings.shape[0], self.num_classes) or labels.dtype != torch.bool:
                raise HashpaError(f"{type(self).__name__}: multi-labels must be bool [batch, classes] = [{embeddings.shape[0]}, "
                                  f"{self.num_classes}], got {labels.dtype} {tuple(labels.shape)}")
            return
        if labels.shape != (embeddings.shape[0],):
            raise HashpaError(
                f"{type(self).__name__}: labels must be [batch] = [{embeddings.shape[0]}], got shape {tuple(labels.shape)}"
            )
        if labels.dtype not in (torch.int64, torch.int32):
            raise HashpaError(f"{type(self).__name__}: labels must be int64 class indices, got {labels.dtype}")
        # The value check reads the labels back to the host: skipped inside torch.compile'd graphs.
        if self.num_classes is not None and labels.numel() and not torch.compiler.is_compiling():
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                bad = low if low < 0 else high
                raise HashpaError(
                    f"{type(self).__name__}: label {bad} is outside [0, {self.num_classes}); "
                    "labels must be contiguous class indices of the training set"
                )


class ProxyLoss(MetricLoss):
    """A loss with one learnable proxy per class, ``.proxies`` [num_classes, embedding_dim]."""

    def __init__(self, num_classes: int, embedding_dim: int):
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise HashpaError(f"need num_classes >= 1 and embedding_dim >= 1, got {num_classes}, {embedding_dim}")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")

    def _check_inputs(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        super()._check_inputs(embeddings, labels)
        if embeddings.shape[1] != self.embedding_dim:
            raise HashpaError(
                f"{type(self).__name__}: embeddings have {embeddings.shape[1]} dimensions, the proxies {self.embedding_dim}"
            )

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        proxies = self.proxies.to(embeddings.dtype)
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(proxies, dim=1).T
        return self.loss_from_cosine(cosine, labels)

    def loss_from_cosine(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """cosine: [B, C] similarity of each embedding to each proxy."""
        raise NotImplementedError


def positive_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, classes): every (sample, class) pair where the sample belongs to the class, for class
    indices [B] (one pair a sample) or multi-hot labels bool [B, C] (as many as its classes)."""
    if labels.ndim == 2:
        return torch.nonzero(labels, as_tuple=True)
    return torch.arange(len(labels), device=labels.device), labels


def log1p_sum_exp(z: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """log(1 + sum over masked entries of exp(z)) along `dim`, stable and NaN-free.

    Equals 0 where the mask selects nothing; gradients of unselected entries are exactly 0.
    """
    return log1p_sum_exp_all(z.masked_fill(~mask, float("-inf")), dim)


def log1p_sum_exp_all(z: torch.Tensor, dim: int) -> torch.Tensor:
    """log(1 + sum of exp(z)) along `dim`; entries of -inf count as absent."""
    shift = z.amax(dim=dim, keepdim=True).clamp(min=0).detach()
    total = torch.exp(z - shift).sum(dim=dim, keepdim=True) + torch.exp(-shift)
    return (shift + torch.log(total)).squeeze(dim)
