"""Proxy-NCA and Multi-Similarity against loop implementations of their equations."""

import math

import numpy as np
import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.losses import MultiSimilarityLoss, ProxyNCALoss, build_loss


def normalise(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def reference_proxy_nca(x, labels, proxies, scale):
    x, p = normalise(x), normalise(proxies)
    total = 0.0
    for xi, y in zip(x, labels):
        d = ((xi - p) ** 2).sum(axis=1)
        numerator = math.exp(-scale * d[y])
        denominator = sum(math.exp(-scale * d[z]) for z in range(len(p)) if z != y)
        total += -math.log(numerator / denominator)
    return total / len(x)


def reference_multi_similarity(x, labels, alpha, beta, base, epsilon):
    x = normalise(x)
    s = x @ x.T
    labels = list(labels)
    total = 0.0
    for i in range(len(x)):
        pos = [s[i, j] for j in range(len(x)) if j != i and labels[j] == labels[i]]
        neg = [s[i, j] for j in range(len(x)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        neg_kept = [v for v in neg if v + epsilon > min(pos)]
        pos_kept = [v for v in pos if v - epsilon < max(neg)]
        if not pos_kept or not neg_kept:
            continue
        total += math.log(1 + sum(math.exp(-alpha * (v - base)) for v in pos_kept)) / alpha
        total += math.log(1 + sum(math.exp(beta * (v - base)) for v in neg_kept)) / beta
    return total / len(x)


def batch(seed, n=20, dim=8, classes=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randint(classes, (n,), generator=g)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_proxy_nca_matches_reference(seed, dtype):
    loss = ProxyNCALoss(6, 8, scale=3.0).to(torch.float64 if dtype == torch.float64 else torch.float32)
    x, labels = batch(seed)
    value = loss(x.to(dtype), labels)
    expected = reference_proxy_nca(x.to(dtype).double(), labels, loss.proxies.detach(), 3.0)
    assert value.item() == pytest.approx(expected, rel=1e-10 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_multi_similarity_matches_reference(seed, dtype):
    loss = MultiSimilarityLoss()
    x, labels = batch(seed)
    value = loss(x.to(dtype), labels)
    expected = reference_multi_similarity(x.to(dtype).double(), labels, 2.0, 50.0, 0.5, 0.1)
    assert expected > 0
    assert value.item() == pytest.approx(expected, rel=1e-10 if dtype == torch.float64 else 1e-4)


def test_multi_similarity_without_valid_pairs_is_zero_with_a_gradient():
    x = torch.randn(4, 8, requires_grad=True)
    value = MultiSimilarityLoss()(x, torch.arange(4))  # no positives at all
    value.backward()
    assert value.item() == 0.0 and x.grad is not None


def test_gradchecks():
    x, labels = batch(0, n=8, dim=5, classes=3)
    nca = ProxyNCALoss(3, 5, scale=2.0).double()
    assert torch.autograd.gradcheck(lambda inp: nca(inp, labels), (x.clone().requires_grad_(),))
    ms = MultiSimilarityLoss(beta=10.0)
    assert torch.autograd.gradcheck(lambda inp: ms(inp, labels), (x.clone().requires_grad_(),))


def test_build_loss_by_name():
    assert isinstance(build_loss("proxy_nca", 4, 8), ProxyNCALoss)
    assert isinstance(build_loss("ms", 4, 8), MultiSimilarityLoss)
    with pytest.raises(HashpaError, match="unknown loss"):
        build_loss("triplet", 4, 8)
