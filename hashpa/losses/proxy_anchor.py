"""Proxy Anchor loss (Kim, Kim, Cho, Kwak: "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020)."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from hashpa.devices import TRAINING_COPIES, check_allocation
from hashpa.errors import HashpaError
from hashpa.losses.base import ProxyLoss, log1p_sum_exp_all, positive_pairs


class ProxyAnchorLoss(ProxyLoss):
    r"""The paper's equation, with s(x, p) the cosine similarity of x and proxy p:

    .. math::
        \frac{1}{|P^+|}\sum_{p\in P^+}\log\Big(1+\sum_{x\in X_p^+}e^{-\alpha(s(x,p)-\delta)}\Big)
        + \frac{1}{|P|}\sum_{p\in P}\log\Big(1+\sum_{x\in X_p^-}e^{\alpha(s(x,p)+\delta)}\Big)

    P+ are the proxies with at least one positive in the batch, P all proxies. With multi-hot
    labels a sample is a positive of every proxy of its labels and a negative of the others (the
    paper's loss over the sets X_p^+, unchanged).

    ``proxy_chunk``: if set, proxies are processed in chunks of that many with activation
    checkpointing, so the [B, C] similarity never exists whole (for very many classes); the
    result is the same.

    ``proxies_per_class`` K > 1 gives each class K proxies (``.proxies`` [C * K, D], class c's in
    rows c * K .. c * K + K - 1), so that a class of several modes is not squeezed onto one point:
    s(x, p_c) above is then SoftTriple's smooth maximum over the class's proxies (Qian et al.,
    "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling", ICCV 2019, equation 5),
    \sum_k \mathrm{softmax}_k(\gamma s(x, p_c^k))\, s(x, p_c^k), with its paper's γ = 10 (1 / 0.1).
    """

    multi_label = True

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        alpha: float = 32.0,
        margin: float = 0.1,
        proxy_chunk: int | None = None,
        proxies_per_class: int = 1,
        smoothness: float = 10.0,
    ):
        super().__init__(num_classes, embedding_dim)
        if proxies_per_class < 1:
            raise HashpaError(f"--proxies-per-class must be at least 1, got {proxies_per_class}")
        if proxies_per_class > 1 and proxy_chunk:
            raise HashpaError("several proxies per class and proxy chunks do not combine: leave proxy_chunk unset")
        if proxies_per_class > 1:
            check_allocation(4 * TRAINING_COPIES * num_classes * proxies_per_class * embedding_dim,
                             f"{num_classes} classes x {proxies_per_class} proxies x {embedding_dim} dimensions", "lower --proxies-per-class")
            self.proxies = torch.nn.Parameter(torch.empty(num_classes * proxies_per_class, embedding_dim))
            torch.nn.init.kaiming_normal_(self.proxies, mode="fan_out")
        self.alpha = alpha
        self.margin = margin
        self.proxy_chunk = proxy_chunk
        self.proxies_per_class, self.smoothness = proxies_per_class, smoothness

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.proxy_chunk or self.proxy_chunk >= self.num_classes:
            return super().compute(embeddings, labels)
        x = torch.nn.functional.normalize(embeddings, dim=1)
        positive_sum = negative_sum = x.new_zeros(())
        # torch.split, not slicing: its backward joins the chunks' gradients once instead of
        # materialising a full-size gradient per chunk.
        for index, proxies in enumerate(torch.split(self.proxies, self.proxy_chunk)):
            pos, neg = checkpoint(self._chunk_sums, x, proxies, labels, index * self.proxy_chunk, use_reentrant=False)
            positive_sum, negative_sum = positive_sum + pos, negative_sum + neg
        with_positive = torch.unique(positive_pairs(labels)[1]).numel()
        return positive_sum / with_positive + negative_sum / self.num_classes

    def loss_from_cosine(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.proxies_per_class > 1:  # [B, C * K] -> [B, C]: each class's smooth maximum over its proxies
            per_class = cosine.view(len(cosine), self.num_classes, self.proxies_per_class)
            cosine = (torch.softmax(self.smoothness * per_class, dim=2) * per_class).sum(dim=2)
        rows, cols = positive_pairs(labels)
        positive_lse, negative_lse, with_positive = self._terms(cosine, rows, cols)
        return positive_lse.sum() / with_positive.sum() + negative_lse.mean()

    def _chunk_sums(self, x, proxies, labels, first_class):
        proxies = torch.nn.functional.normalize(proxies.to(x.dtype), dim=1)
        rows, cols = positive_pairs(labels)
        local = cols - first_class
        inside = (local >= 0) & (local < len(proxies))
        positive_lse, negative_lse, _ = self._terms(x @ proxies.T, rows[inside], local[inside])
        return positive_lse.sum(), negative_lse.sum()

    def _terms(self, cosine: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        """Per-proxy positive and negative log-sum-exp terms of `cosine` [B, C], where sample rows[i]
        has a positive proxy in column cols[i] (a multi-label sample appears once per class).

        The positive side is gathered (one value a pair) and grouped by proxy, and the negative side
        is the whole [B, C] matrix with those entries removed: no [B, C] mask is ever built.
        """
        classes = cosine.shape[1]
        positive_z = -self.alpha * (cosine[rows, cols] - self.margin)
        shift = positive_z.new_zeros(classes).scatter_reduce(0, cols, positive_z.detach(), reduce="amax")
        grouped = positive_z.new_zeros(classes).index_add(0, cols, torch.exp(positive_z - shift[cols]))
        positive_lse = shift + torch.log(grouped + torch.exp(-shift))
        negative_z = (self.alpha * (cosine + self.margin)).index_put((rows, cols), cosine.new_tensor(float("-inf")))
        negative_lse = log1p_sum_exp_all(negative_z, dim=0)
        with_positive = torch.zeros(classes, dtype=torch.bool, device=cosine.device).index_fill(0, cols, True)
        return positive_lse, negative_lse, with_positive
