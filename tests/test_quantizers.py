import numpy as np
import pytest

from hashpa.errors import HashpaError
from hashpa.metrics.retrieval import recall_at_k
from hashpa.quantizers import fit_itq, fit_lsh, fit_nested_itq, fit_pca


def clustered(seed, n=400, dim=32, classes=8):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)) * 3
    labels = rng.integers(0, classes, n)
    return (centres[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


def test_codes_are_packed_and_deterministic():
    x, _ = clustered(0)
    for fit in (fit_lsh, fit_itq):
        codes = fit(x, 16, seed=3).encode(x)
        assert codes.dtype == np.uint8 and codes.shape == (len(x), 2)
        np.testing.assert_array_equal(codes, fit(x, 16, seed=3).encode(x))


def test_itq_rotation_lowers_quantisation_error_below_pca():
    x, _ = clustered(1)
    hasher = fit_itq(x, 16)
    v = (x - hasher.mean) @ hasher.projection
    rotated_error = np.square(np.sign(v) - v).sum()
    # the same PCA subspace without the learned rotation
    centred = x - x.mean(axis=0)
    pca = np.linalg.svd(centred, full_matrices=False)[2][:16].T
    plain = centred @ pca
    assert rotated_error < np.square(np.sign(plain) - plain).sum()
    np.testing.assert_allclose(hasher.projection.T @ hasher.projection, np.eye(16), atol=1e-4)


def test_both_recover_clusters():
    x, y = clustered(2)
    for fit in (fit_lsh, fit_itq):
        assert recall_at_k(fit(x, 32).encode(x), y, ks=(1,), metric="hamming")[1] > 0.9


def test_errors():
    with pytest.raises(HashpaError, match="PCA to 16 dimensions"):
        fit_itq(np.zeros((10, 4), np.float32), 16)
    with pytest.raises(HashpaError, match="expected embeddings"):
        fit_lsh(np.zeros((10, 4), np.float32), 16).encode(np.zeros((3, 5), np.float32))


def test_pca_directions_are_orthonormal_and_keep_the_most_variance():
    x, _ = clustered(3)
    mean, directions = fit_pca(x, 8)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(directions.T @ directions, np.eye(8), atol=1e-8)
    kept = np.square((x - mean) @ directions).sum()
    random_basis = np.linalg.qr(np.random.default_rng(0).standard_normal((x.shape[1], 8)))[0]
    assert kept > np.square((x - mean) @ random_basis).sum()
    # the variance kept equals the sum of the 8 largest eigenvalues of the scatter matrix
    eigenvalues = np.linalg.eigvalsh(np.cov((x - mean).T, bias=True) * len(x))
    np.testing.assert_allclose(kept, eigenvalues[-8:].sum(), rtol=1e-6)


def test_rotations_are_orthogonal_and_seeded():
    from hashpa.quantizers import itq_rotation, random_rotation

    v = np.random.default_rng(0).standard_normal((200, 16))
    for rotation in (random_rotation(16, 0), itq_rotation(v)):
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(16), atol=1e-10)
    np.testing.assert_array_equal(random_rotation(16, 3), random_rotation(16, 3))
    assert not np.allclose(random_rotation(16, 0), random_rotation(16, 1))


def test_nested_codes_begin_with_the_short_pca_itq_code():
    x, _ = clustered(3, n=300, dim=64)
    nested = fit_nested_itq(x, 16, 48)
    long_codes, short_codes = nested.encode(x), fit_itq(x, 16).encode(x)
    assert long_codes.shape == (300, 6)
    np.testing.assert_array_equal(long_codes[:, :2], short_codes)  # the prefix is the 16-bit code, bit for bit
    rest = fit_pca(x, 48)[1][:, 16:]
    np.testing.assert_allclose(nested.projection[:, 16:].T @ nested.projection[:, 16:], np.eye(32), atol=1e-5)
    np.testing.assert_allclose(rest @ rest.T @ nested.projection[:, 16:], nested.projection[:, 16:], atol=1e-5)  # the next directions, rotated
    with pytest.raises(HashpaError, match="shorter than the long"):
        fit_nested_itq(x, 32, 32)
