"""HashNet, DPSH and GreedyHash against loop implementations of their papers' equations in several
dtypes, and one behaviour each method's paper states, checked on a hash layer each method trains
(CSQ and OrthoHash too) with the loss and the view of the outputs that ``hashpa.methods`` gives it."""

import math

import numpy as np
import pytest
import torch

from hashpa.losses import DPSHLoss, GreedyHashLoss, HashNetLoss, build_loss, hash_centers
from hashpa.methods import METHODS
from hashpa.metrics.hashing import hashing_scores

DTYPES = [(torch.float64, 1e-10), (torch.float32, 1e-5), (torch.bfloat16, 3e-2)]


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def reference_hashnet(h, labels, bits, scale):
    u = [[math.tanh(scale * v) for v in row] for row in h]
    alpha = 10.0 / bits
    similar, dissimilar = [], []
    for i in range(len(u)):
        for j in range(len(u)):
            if i == j:
                continue
            ip = alpha * sum(a * b for a, b in zip(u[i], u[j]))
            s = 1.0 if labels[i] == labels[j] else 0.0
            (similar if s else dissimilar).append(softplus(ip) - s * ip)
    # the weights |S|/|S1| and |S|/|S0|, then the sum over |S|: each group's mean
    return sum(similar) / len(similar) + sum(dissimilar) / len(dissimilar)


def reference_dpsh(u, labels, eta):
    terms = []
    for i in range(len(u)):
        for j in range(len(u)):
            if i != j:
                theta = 0.5 * float(np.dot(u[i], u[j]))
                s = 1.0 if labels[i] == labels[j] else 0.0
                terms.append(softplus(theta) - s * theta)
    quantisation = np.mean([((1.0 if v > 0 else -1.0) - v) ** 2 for v in np.ravel(u)])
    return sum(terms) / len(terms) + eta * quantisation


def reference_greedyhash(h, labels, weight, alpha):
    total = 0.0
    for row, y in zip(h, labels):
        b = np.where(row > 0, 1.0, -1.0)
        logits = weight @ b
        top = logits.max()
        total += -(logits[y] - top - math.log(np.exp(logits - top).sum()))
    penalty = np.mean(np.abs(np.abs(h) - 1) ** 3)
    return total / len(h) + alpha * penalty


@pytest.mark.parametrize("dtype,tolerance", DTYPES)
@pytest.mark.parametrize("progress", [0.0, 0.6])
def test_hashnet_equals_its_equation(dtype, tolerance, progress):
    torch.manual_seed(0)
    h = torch.randn(12, 16, dtype=torch.float64)
    labels = torch.randint(0, 3, (12,))
    loss = HashNetLoss(3, 16)
    loss.set_progress(progress)
    assert loss.scale == pytest.approx(math.sqrt(1 + 50 * progress))
    got = loss(h.to(dtype), labels)
    expected = reference_hashnet(h.to(dtype).double().tolist(), labels.tolist(), 16, loss.scale)
    assert float(got.detach()) == pytest.approx(expected, rel=tolerance)


def test_hashnet_without_similar_pairs_is_the_dissimilar_mean():
    h = torch.randn(4, 16, dtype=torch.float64)
    labels = torch.arange(4)
    got = HashNetLoss(4, 16)(h, labels)
    u = torch.tanh(h).numpy()
    assert float(got) == pytest.approx(np.mean([softplus(10 / 16 * float(u[i] @ u[j])) for i in range(4) for j in range(4) if i != j]))


@pytest.mark.parametrize("dtype,tolerance", DTYPES)
def test_dpsh_equals_its_equation(dtype, tolerance):
    torch.manual_seed(1)
    u = torch.randn(10, 16, dtype=torch.float64)
    labels = torch.randint(0, 3, (10,))
    got = DPSHLoss(3, 16)(u.to(dtype), labels)
    expected = reference_dpsh(u.to(dtype).double().numpy(), labels.tolist(), 0.1)
    assert float(got.detach()) == pytest.approx(expected, rel=tolerance)


@pytest.mark.parametrize("dtype,tolerance", DTYPES)
def test_greedyhash_equals_its_equation(dtype, tolerance):
    torch.manual_seed(2)
    h = torch.randn(10, 16, dtype=torch.float64)
    labels = torch.randint(0, 4, (10,))
    loss = GreedyHashLoss(4, 16).double()
    got = loss(h.to(dtype), labels)
    expected = reference_greedyhash(h.to(dtype).double().numpy(), labels.numpy(), loss.classifier.weight.detach().to(dtype).double().numpy(), 0.1)
    assert float(got.detach()) == pytest.approx(expected, rel=tolerance)


def test_greedyhash_passes_the_gradient_of_the_signs_straight_through():
    h = torch.tensor([[0.5, -2.0, 0.1, -0.3]], dtype=torch.float64, requires_grad=True)
    loss = GreedyHashLoss(2, 4, alpha=0.0).double()
    loss(h, torch.tensor([1])).backward()
    codes = torch.where(h > 0, 1.0, -1.0).double().detach().requires_grad_(True)
    torch.nn.functional.cross_entropy(codes @ loss.classifier.weight.T, torch.tensor([1])).backward()
    assert torch.allclose(h.grad, codes.grad)  # d loss / d h is d loss / d b, unchanged


def test_the_pairwise_losses_take_multi_labels():
    u = torch.randn(6, 16, dtype=torch.float64)
    hot = torch.zeros(6, 3, dtype=torch.bool)
    hot[torch.arange(6), torch.tensor([0, 0, 1, 1, 2, 2])] = True
    for name in ("hashnet", "dpsh"):
        loss = build_loss(name, 3, 16)
        assert float(loss(u, hot)) == pytest.approx(float(loss(u, torch.tensor([0, 0, 1, 1, 2, 2]))))


def train_hash_layer(name: str, bits: int, steps: int = 300, classes: int = 4, per_class: int = 16, seed: int = 0):
    """A linear hash layer (with the method's normalisation) on noisy clusters of features, trained by
    `name`'s loss: (codes uint8 packed, outputs h, labels)."""
    torch.manual_seed(seed)
    features = 2 * torch.randn(classes, 32).repeat_interleave(per_class, 0) + 0.5 * torch.randn(classes * per_class, 32)
    labels = torch.arange(classes).repeat_interleave(per_class)
    method = METHODS[name]
    norm = method.settings["hash_norm"]
    layer = torch.nn.Sequential(torch.nn.Linear(32, bits), torch.nn.BatchNorm1d(bits) if norm == "batchnorm" else torch.nn.Identity())
    loss = build_loss(method.loss, classes, bits)
    optimiser = torch.optim.Adam([*layer.parameters(), *loss.parameters()], lr=1e-2)
    for step in range(steps):
        if hasattr(loss, "set_progress"):
            loss.set_progress(step / steps)
        optimiser.zero_grad()
        h = layer(features)
        loss(torch.tanh(h) if method.relaxation == "tanh" else h, labels).backward()
        optimiser.step()
    layer.eval()
    with torch.no_grad():
        h = layer(features)
    return np.packbits((h > 0).numpy(), axis=1), h, labels


@pytest.mark.parametrize("bits", [16, 32])
def test_csq_codes_gather_at_their_centres(bits):
    # CSQ's section 3: the codes of a class concentrate at its hash centre, so a Hamming ball of radius 2
    # around a query holds its own class: P@H<=2 near 1.
    codes, _, labels = train_hash_layer("csq", bits)
    signs = torch.from_numpy(np.unpackbits(codes, axis=1).astype(np.float32) * 2 - 1)
    distance_to_centre = (bits - (signs * hash_centers(4, bits)[labels]).sum(dim=1)) / 2
    assert distance_to_centre.max() <= 2
    assert hashing_scores(codes, labels.numpy())["p@h<=2"] > 0.95


def test_orthohash_codes_take_their_class_codeword():
    # OrthoHash's section 3: maximising the cosine to orthogonal codewords makes the codes the codewords' signs.
    codes, _, labels = train_hash_layer("orthohash", 32)
    signs = torch.from_numpy(np.unpackbits(codes, axis=1).astype(np.float32) * 2 - 1)
    nearest = (signs @ hash_centers(4, 32).T).argmax(dim=1)
    assert nearest.eq(labels).all()


def test_hashnet_continuation_drives_the_relaxed_codes_to_their_signs():
    # HashNet's section 3.3: as beta grows, tanh(beta h) approaches sign(h): the relaxed codes end near +-1.
    _, h, labels = train_hash_layer("hashnet", 32)
    final = HashNetLoss(4, 32)
    final.set_progress(1.0)
    relaxed = torch.tanh(final.scale * h)
    assert float((relaxed.abs() - 1).abs().mean()) < 0.1
    assert hashing_scores(np.packbits((h > 0).numpy(), axis=1), labels.numpy())["map@all"] > 0.95


def test_dpsh_quantisation_brings_the_outputs_to_their_signs():
    # DPSH's equation 4: the term eta ||b - u||^2 makes the real outputs close to the codes b.
    codes, u, labels = train_hash_layer("dpsh", 32)
    assert float((torch.where(u > 0, 1.0, -1.0) - u).pow(2).mean()) < 0.2
    assert hashing_scores(codes, labels.numpy())["map@all"] > 0.95


def test_greedyhash_codes_classify_their_images():
    # GreedyHash trains the classifier on the binary codes themselves: they separate the classes.
    torch.manual_seed(3)
    codes, h, labels = train_hash_layer("greedyhash", 32)
    assert hashing_scores(codes, labels.numpy())["map@all"] > 0.95
    assert float((h.abs() - 1).abs().mean()) < 0.5  # the cube penalty draws |h| towards 1
