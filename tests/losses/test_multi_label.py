"""Multi-label losses against loop references: Proxy Anchor (a sample is a positive of every proxy
of its labels), CSQ (the centre is the sign of the sum of its labels' centres) and OrthoHash (the
mean of the labels' cross-entropy terms); single labels as one-hot rows give the single-label loss."""

import math

import numpy as np
import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.losses import CSQLoss, MultiSimilarityLoss, OrthoHashLoss, ProxyAnchorLoss


def reference_multi_label_proxy_anchor(x, labels, proxies, alpha, margin):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    p = proxies / np.linalg.norm(proxies, axis=1, keepdims=True)
    positive_terms, negative_terms = [], []
    for c in range(len(p)):
        s = x @ p[c]
        pos, neg = s[labels[:, c]], s[~labels[:, c]]
        if len(pos):
            positive_terms.append(math.log(1 + sum(math.exp(-alpha * (v - margin)) for v in pos)))
        negative_terms.append(math.log(1 + sum(math.exp(alpha * (v + margin)) for v in neg)))
    return sum(positive_terms) / len(positive_terms) + sum(negative_terms) / len(p)


def multi_hot(seed, n=20, classes=8):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, classes)) < 0.3
    labels[np.arange(n), rng.integers(0, classes, n)] = True  # every sample has a label
    return labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk", [None, 3])
def test_proxy_anchor_multi_label_equals_the_reference(seed, chunk):
    labels = multi_hot(seed)
    x = torch.randn(20, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    loss = ProxyAnchorLoss(8, 12, proxy_chunk=chunk).double()
    expected = reference_multi_label_proxy_anchor(x.numpy(), labels, loss.proxies.detach().numpy(), 32.0, 0.1)
    assert float(loss(x, torch.from_numpy(labels))) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("loss", [ProxyAnchorLoss(6, 16), CSQLoss(6, 16), OrthoHashLoss(6, 16)], ids=["proxy_anchor", "csq", "orthohash"])
def test_one_hot_rows_give_the_single_label_loss(loss):
    labels = torch.randint(0, 6, (18,), generator=torch.Generator().manual_seed(0))
    codes = torch.tanh(torch.randn(18, 16, generator=torch.Generator().manual_seed(1)))
    one_hot = torch.nn.functional.one_hot(labels, 6).bool()
    assert float(loss(codes, one_hot)) == pytest.approx(float(loss(codes, labels)), rel=1e-6)


def test_csq_multi_label_centres_and_loss():
    loss = CSQLoss(5, 16)
    labels = torch.from_numpy(multi_hot(2, n=10, classes=5))
    targets = loss.targets(labels)
    for row, target in zip(labels, targets):
        summed = loss.centers[row].sum(dim=0)
        expected = torch.where(summed == 0, loss.tie_breaker, torch.sign(summed))
        assert torch.equal(target, expected)
    codes = torch.tanh(torch.randn(10, 16, dtype=torch.float64))
    t = (targets.double() + 1) / 2
    p = ((codes + 1) / 2).clamp(1e-7, 1 - 1e-7)
    reference = float(-(t * p.log() + (1 - t) * (1 - p).log()).mean() + 1e-4 * (codes.abs() - 1).pow(2).mean())
    assert float(loss(codes, labels)) == pytest.approx(reference, rel=1e-9)


def test_orthohash_multi_label_is_the_mean_over_labels():
    loss = OrthoHashLoss(5, 16)
    labels = multi_hot(3, n=9, classes=5)
    codes = np.tanh(np.random.default_rng(4).normal(size=(9, 16)))
    c = loss.codewords.double().numpy()
    total = 0.0
    for u, row in zip(codes, labels):
        cosines = c @ u / (np.linalg.norm(c, axis=1) * np.linalg.norm(u))
        logits = 8.0 * (cosines - 0.2 * row)
        log_softmax = logits - logits.max() - math.log(np.exp(logits - logits.max()).sum())
        total += -log_softmax[row].mean()
    assert float(loss(torch.from_numpy(codes), torch.from_numpy(labels))) == pytest.approx(total / 9, rel=1e-9)


def test_losses_without_a_multi_label_form_refuse_multi_labels():
    with pytest.raises(HashpaError, match="one class per sample"):
        MultiSimilarityLoss()(torch.randn(4, 8), torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(HashpaError, match="bool"):
        ProxyAnchorLoss(3, 8)(torch.randn(4, 8), torch.ones(4, 3, dtype=torch.int64))
