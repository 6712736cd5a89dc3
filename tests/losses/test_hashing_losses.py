"""CSQ and OrthoHash against loop implementations of their papers' equations, in several dtypes;
their hash centres; and a short training run in which each loss learns codes."""

import math

import numpy as np
import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.losses import CSQLoss, OrthoHashLoss, build_loss, hash_centers
from hashpa.losses.centers import hadamard


def reference_csq(u, labels, centers, quantization):
    total, bits = 0.0, len(u[0])
    for code, y in zip(u, labels):
        for k in range(bits):
            p = min(max((code[k] + 1) / 2, 1e-7), 1 - 1e-7)
            t = (centers[y][k] + 1) / 2
            total += -(t * math.log(p) + (1 - t) * math.log(1 - p))
    central = total / (len(u) * bits)
    quant = sum((abs(v) - 1) ** 2 for code in u for v in code) / (len(u) * bits)
    return central + quantization * quant


def reference_orthohash(u, labels, codewords, scale, margin):
    total = 0.0
    for code, y in zip(u, labels):
        cosines = [np.dot(code, c) / (np.linalg.norm(code) * np.linalg.norm(c)) for c in codewords]
        logits = [scale * (cos - (margin if j == y else 0.0)) for j, cos in enumerate(cosines)]
        top = max(logits)
        total += -(logits[y] - top - math.log(sum(math.exp(v - top) for v in logits)))
    return total / len(u)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_csq_equals_its_equation(dtype, tolerance):
    torch.manual_seed(0)
    u = torch.tanh(torch.randn(12, 16, dtype=torch.float64) * 2)
    labels = torch.randint(0, 5, (12,))
    loss = CSQLoss(5, 16)
    got = loss(u.to(dtype), labels)
    expected = reference_csq(u.to(dtype).double().tolist(), labels.tolist(), loss.centers.tolist(), 1e-4)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert float(got) == pytest.approx(expected, rel=tolerance)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_orthohash_equals_its_equation(dtype, tolerance):
    torch.manual_seed(1)
    u = torch.tanh(torch.randn(10, 32, dtype=torch.float64))
    labels = torch.randint(0, 7, (10,))
    loss = OrthoHashLoss(7, 32)
    got = loss(u.to(dtype), labels)
    expected = reference_orthohash(u.to(dtype).double().numpy(), labels.tolist(), loss.codewords.double().numpy(), 8.0, 0.2)
    assert float(got) == pytest.approx(expected, rel=tolerance)


def test_hash_centres_are_hadamard_rows_then_random_signs():
    square = hadamard(16)
    assert torch.equal(square @ square.T, 16 * torch.eye(16))
    centers = hash_centers(40, 16, seed=3)
    assert torch.equal(centers[:16], square) and torch.equal(centers[16:32], -square)
    assert set(centers.unique().tolist()) == {-1.0, 1.0} and torch.equal(centers, hash_centers(40, 16, seed=3))
    distances = (16 - centers[:32] @ centers[:32].T) / 2
    assert set(distances[~torch.eye(32, dtype=bool)].unique().tolist()) == {8.0, 16.0}  # bits/2 apart, or opposite
    with pytest.raises(HashpaError, match="power of two"):
        hadamard(12)


def test_the_losses_fall_as_codes_move_to_their_centres():
    labels = torch.arange(4).repeat(3)
    for loss in (CSQLoss(4, 16), OrthoHashLoss(4, 16)):
        target = hash_centers(4, 16)[labels]
        near, far = loss(0.9 * target, labels), loss(-0.9 * target, labels)
        assert near < far


@pytest.mark.parametrize("name", ["csq", "orthohash"])
def test_a_hash_layer_trained_by_the_loss_learns_its_classes_codes(name):
    torch.manual_seed(0)
    features = torch.randn(4, 32).repeat_interleave(16, 0) + 0.3 * torch.randn(64, 32)  # 4 classes, 16 noisy samples each
    labels = torch.arange(4).repeat_interleave(16)
    layer, loss = torch.nn.Linear(32, 16), build_loss(name, 4, 16)
    optimiser = torch.optim.Adam(layer.parameters(), lr=1e-2)
    first = float(loss(torch.tanh(layer(features)), labels).detach())
    for _ in range(200):
        optimiser.zero_grad()
        value = loss(torch.tanh(layer(features)), labels)
        value.backward()
        optimiser.step()
    codes = torch.sign(layer(features))
    centres = hash_centers(4, 16)
    assert float(value) < first / 2
    assert (codes @ centres.T).argmax(dim=1).eq(labels).all()  # every code nearest its class's centre


def test_training_with_either_code_loss_runs_and_records_it(tmp_path):
    from hashpa.runs import resolve_config
    from hashpa.training import train
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "images", classes=4, per_class=8)
    for code_loss in ("csq", "orthohash"):
        config = resolve_config(dict(data=str(folder), split="seen", epochs=1, batch_size=16, workers=0, out=str(tmp_path / code_loss),
                                     code_loss=code_loss, code_epochs=0, hash_init="random", warmup_epochs=0, baseline=False,
                                     model=dict(backbone="smallcnn", weights="none", dim=16, bits=16)))
        record = train(config).history[-1]
        assert record["loss"]["codes"] > 0 and 0 <= record["codes"]["recall@1"] <= 1
