"""Proxy Anchor with several proxies per class against a loop reference (SoftTriple's smooth maximum
over a class's proxies, then the paper's equation); K = 1 is the plain loss; a run trains with K = 3."""

import math

import numpy as np
import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.losses import ProxyAnchorLoss, build_loss


def reference(x, labels, proxies, k, gamma, alpha, margin):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    p = proxies / np.linalg.norm(proxies, axis=1, keepdims=True)
    classes = len(p) // k
    similarity = np.zeros((len(x), classes))
    for i in range(len(x)):
        for c in range(classes):
            s = [float(x[i] @ p[c * k + j]) for j in range(k)]
            weights = [math.exp(gamma * v) for v in s]
            similarity[i, c] = sum(w * v for w, v in zip(weights, s)) / sum(weights)
    positive_terms, negative_terms = [], []
    for c in range(classes):
        pos, neg = similarity[labels == c, c], similarity[labels != c, c]
        if len(pos):
            positive_terms.append(math.log(1 + sum(math.exp(-alpha * (v - margin)) for v in pos)))
        negative_terms.append(math.log(1 + sum(math.exp(alpha * (v + margin)) for v in neg)))
    return sum(positive_terms) / len(positive_terms) + sum(negative_terms) / classes


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_several_proxies_per_class_equal_the_reference(k, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(20, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (20,), generator=generator)
    loss = ProxyAnchorLoss(5, 8, proxies_per_class=k).double()
    assert loss.proxies.shape == (5 * k, 8)
    expected = reference(x.numpy(), labels.numpy(), loss.proxies.detach().numpy(), k, 10.0, 32.0, 0.1)
    assert float(loss(x, labels)) == pytest.approx(expected, rel=1e-9)


def test_one_proxy_per_class_is_the_plain_loss():
    torch.manual_seed(0)
    plain = ProxyAnchorLoss(4, 8)
    x, labels = torch.randn(12, 8), torch.arange(4).repeat(3)
    assert float(plain(x, labels)) == pytest.approx(reference(x.numpy().astype(float), labels.numpy(), plain.proxies.detach().numpy(), 1,
                                                              10.0, 32.0, 0.1), rel=1e-5)


def test_options_that_do_not_combine_are_refused():
    with pytest.raises(HashpaError, match="Proxy Anchor"):
        build_loss("ms", 4, 8, proxies_per_class=2)
    with pytest.raises(HashpaError, match="proxy chunks"):
        ProxyAnchorLoss(4, 8, proxy_chunk=2, proxies_per_class=2)


def test_a_run_trains_with_three_proxies_per_class(tmp_path):
    from hashpa.runs import resolve_config
    from hashpa.training import train
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "images", classes=4, per_class=8)
    config = resolve_config(dict(data=str(folder), split="seen", epochs=1, batch_size=16, workers=0, out=str(tmp_path / "run"), baseline=False,
                                 proxies_per_class=3, code_epochs=0, model=dict(backbone="smallcnn", weights="none", dim=16, bits=16)))
    result = train(config)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["objective"]["metric.proxies"].shape == (4 * 3, 16) and result.history[-1]["loss"]["float"] > 0
