import math

import numpy as np
import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.losses import ProxyAnchorLoss


def reference_proxy_anchor(x, labels, proxies, alpha, margin):
    """The paper's equation, written out with loops in float64 numpy."""
    x = np.asarray(x, np.float64)
    p = np.asarray(proxies, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    labels = np.asarray(labels)
    positive_terms, negative_terms = [], []
    for c in range(len(p)):
        s = x @ p[c]
        pos, neg = s[labels == c], s[labels != c]
        if len(pos):
            positive_terms.append(math.log(1 + sum(math.exp(-alpha * (v - margin)) for v in pos)))
        negative_terms.append(math.log(1 + sum(math.exp(alpha * (v + margin)) for v in neg)))
    return sum(positive_terms) / len(positive_terms) + sum(negative_terms) / len(p)


def batch(seed, n=24, dim=16, classes=10, present=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    pool = torch.tensor(present) if present is not None else torch.arange(classes)
    labels = pool[torch.randint(len(pool), (n,), generator=g)]
    return x, labels


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha,margin", [(32.0, 0.1), (16.0, 0.2), (64.0, 0.0)])
def test_matches_float64_reference(seed, alpha, margin):
    loss = ProxyAnchorLoss(10, 16, alpha=alpha, margin=margin).double()
    x, labels = batch(seed)
    value = loss(x.double(), labels)
    expected = reference_proxy_anchor(x, labels, loss.proxies.detach(), alpha, margin)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_classes_without_positives_and_a_single_class_batch():
    loss = ProxyAnchorLoss(10, 16).double()
    for present in ([2, 7], [4]):
        x, labels = batch(3, present=present)
        expected = reference_proxy_anchor(x, labels, loss.proxies.detach(), 32.0, 0.1)
        assert loss(x.double(), labels).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    loss = ProxyAnchorLoss(10, 16)
    x, labels = batch(1)
    value = loss(x.to(dtype), labels)
    assert value.dtype == torch.float32
    expected = reference_proxy_anchor(x.to(dtype).float(), labels, loss.proxies.detach(), 32.0, 0.1)
    assert value.item() == pytest.approx(expected, rel=1e-4)


def test_gradcheck_float64():
    loss = ProxyAnchorLoss(5, 6, alpha=8.0).double()
    x, labels = batch(2, n=8, dim=6, classes=5)
    x = x.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda inp: loss(inp, labels), (x,))


def test_finite_loss_and_gradients_at_alpha_64_under_bf16_autocast():
    loss = ProxyAnchorLoss(10, 16, alpha=64.0)
    layer = torch.nn.Linear(8, 16)
    x, labels = batch(4, dim=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = layer(x)
        assert embeddings.dtype == torch.bfloat16
        value = loss(embeddings, labels)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(loss.proxies.grad).all()


def test_extreme_similarities_stay_finite():
    loss = ProxyAnchorLoss(3, 4, alpha=64.0)
    x = loss.proxies.detach()[[0, 0, 1]] * 100  # exactly on proxies: cos = 1
    x.requires_grad_()
    value = loss(x, torch.tensor([1, 2, 0]))  # every sample on a wrong proxy: exp(64 * 1.1)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_proxy_chunks_give_the_same_loss_and_gradients():
    torch.manual_seed(0)
    plain = ProxyAnchorLoss(50, 8).double()
    chunked = ProxyAnchorLoss(50, 8, proxy_chunk=7).double()
    chunked.load_state_dict(plain.state_dict())
    x, labels = batch(5, n=30, dim=8, classes=50)
    results = []
    for loss in (plain, chunked):
        inp = x.double().clone().requires_grad_()
        value = loss(inp, labels)
        value.backward()
        results.append((value.item(), inp.grad, loss.proxies.grad))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1])
    torch.testing.assert_close(results[0][2], results[1][2])


def test_proxies_shape_and_init():
    loss = ProxyAnchorLoss(100, 64)
    assert isinstance(loss.proxies, torch.nn.Parameter)
    assert loss.proxies.shape == (100, 64)
    assert loss.proxies.std().item() == pytest.approx(math.sqrt(2 / 100), rel=0.1)  # kaiming, fan_out


@pytest.mark.parametrize("bad", [-1, 10])
def test_labels_out_of_range_are_a_clear_error(bad):
    loss = ProxyAnchorLoss(10, 16)
    x, labels = batch(0)
    labels[3] = bad
    with pytest.raises(HashpaError, match=f"label {bad} is outside"):
        loss(x, labels)


def test_shape_errors():
    loss = ProxyAnchorLoss(10, 16)
    with pytest.raises(HashpaError, match="16"):
        loss(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(HashpaError, match="labels must be"):
        loss(torch.randn(4, 16), torch.zeros(5, dtype=torch.long))


def test_agrees_with_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    ours = ProxyAnchorLoss(40, 16).double()
    theirs = pml.ProxyAnchorLoss(40, 16, margin=0.1, alpha=32).double()
    theirs.proxies.data.copy_(ours.proxies.data)
    x, labels = batch(7, n=64, classes=40)
    assert ours(x.double(), labels).item() == pytest.approx(theirs(x.double(), labels).item(), rel=1e-12)
