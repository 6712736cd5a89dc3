"""Unsupervised binary codes made from float embeddings: reference rows for the learned codes, the
hash head's starting point (``TrainConfig.hash_init``) and codes fitted to a database at index time
(``hashpa index --codes itq``).

- ``fit_lsh``: sign of a random Gaussian projection (sign random projections, Charikar 2002),
  whose Hamming distance estimates the angle between the float vectors.
- ``fit_pca``: the principal directions alone, for a float reference of the same dimension as a code.
- ``fit_itq``: PCA to `bits` dimensions, then Iterative Quantization's learned rotation
  (Gong & Lazebnik, CVPR 2011).

The hashers fit on one set (e.g. the training embeddings) and encode another; codes are packed uint8
[N, bits/8] in hashpa's bit order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashpa.codes import check_bits
from hashpa.errors import HashpaError


@dataclass
class LinearHasher:
    """codes = packbits(((x - mean) @ projection) > 0)."""

    mean: np.ndarray  # float32 [D]
    projection: np.ndarray  # float32 [D, bits]

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x: float [N, D] -> packed uint8 codes [N, bits/8]."""
        return pack_signs(self.project(x))

    def project(self, x: np.ndarray) -> np.ndarray:
        """x: float [N, D] -> float32 [N, bits], the real values whose signs are the code."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise HashpaError(f"expected embeddings [N, {self.mean.shape[0]}], got shape {x.shape}")
        return (x - self.mean) @ self.projection


def enough_rows(rows: int, bits: int) -> bool:
    """Whether `rows` vectors can fit a `bits`-bit PCA or PCA-ITQ code: they must outnumber the bits
    (PCA keeps `bits` directions of their scatter)."""
    return rows > bits


LOW_DATA_ROWS_PER_BIT = 10  # below this many rows per bit a code fitted to them is poorly estimated


def pack_signs(projected: np.ndarray) -> np.ndarray:
    """float [N, bits] projections -> packed uint8 codes [N, bits/8], bit 1 where the projection is > 0."""
    return np.packbits(projected > 0, axis=1)


def fit_lsh(train: np.ndarray, bits: int, seed: int = 0) -> LinearHasher:
    """Random-projection LSH; `train` only fixes the dimension (no centring, so cosine is preserved)."""
    dim = np.asarray(train).shape[1]
    check_bits(bits, "LSH code length")
    projection = np.random.default_rng(seed).standard_normal((dim, bits)).astype(np.float32)
    return LinearHasher(np.zeros(dim, dtype=np.float32), projection)


def fit_pca(train: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean float64 [D] and the top `dims` principal directions float64 [D, dims] of `train` [N, D]
    (needs D >= dims and N > dims). Memory is O(D^2) beyond the input, whatever N."""
    x = np.asarray(train)
    if x.ndim != 2 or x.shape[1] < dims or not enough_rows(x.shape[0], dims):
        raise HashpaError(f"PCA to {dims} dimensions needs more than {dims} training vectors of dimension >= {dims}, got {x.shape}")
    mean = x.mean(axis=0, dtype=np.float64)
    covariance = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), 65536):
        block = x[start : start + 65536].astype(np.float64) - mean
        covariance += block.T @ block
    values, vectors = np.linalg.eigh(covariance)
    top = vectors[:, ::-1][:, :dims]
    return mean, top * np.where(top[np.abs(top).argmax(axis=0), np.arange(dims)] < 0, -1.0, 1.0)  # a fixed sign per direction


def fit_itq(train: np.ndarray, bits: int, iterations: int = 50, seed: int = 0) -> LinearHasher:
    """PCA-ITQ fitted on `train` float [N, D] (needs D >= bits and N > bits)."""
    check_bits(bits, "PCA-ITQ code length")
    mean, pca = fit_pca(train, bits)
    rotation = itq_rotation((np.asarray(train, dtype=np.float64) - mean) @ pca, iterations, seed)
    return LinearHasher(mean.astype(np.float32), (pca @ rotation).astype(np.float32))


def fit_nested_itq(train: np.ndarray, short_bits: int, long_bits: int, iterations: int = 50, seed: int = 0) -> LinearHasher:
    """A `long_bits` code whose first `short_bits` bits are exactly ``fit_itq(train, short_bits)``'s
    code, and whose other bits are ITQ of the next PCA directions: one quantiser, two lengths (the
    short code for a Hamming shortlist, the long one to re-rank it). Needs D >= long_bits, N > long_bits."""
    check_bits(short_bits, "short code length")
    check_bits(long_bits, "long code length")
    if short_bits >= long_bits:
        raise HashpaError(f"the short code must be shorter than the long one, got {short_bits} and {long_bits} bits")
    short = fit_itq(train, short_bits, iterations, seed)  # the prefix: computed as fit_itq computes it, so equal bit for bit
    mean, pca = fit_pca(train, long_bits)
    following = pca[:, short_bits:]
    rotation = itq_rotation((np.asarray(train, dtype=np.float64) - mean) @ following, iterations, seed)
    return LinearHasher(short.mean, np.concatenate([short.projection, (following @ rotation).astype(np.float32)], axis=1))


def itq_rotation(v: np.ndarray, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """ITQ's orthogonal rotation float64 [bits, bits] of centred projections `v` [N, bits]: the one
    that brings v @ rotation closest to its signs (started from a seeded random rotation)."""
    bits = v.shape[1]
    rotation = random_rotation(bits, seed)
    for _ in range(iterations):
        b = np.sign(v @ rotation)
        b[b == 0] = 1
        u, _, wt = np.linalg.svd(b.T @ v)
        rotation = (u @ wt).T
    return rotation


def random_rotation(dims: int, seed: int = 0) -> np.ndarray:
    """A seeded random orthogonal matrix float64 [dims, dims]."""
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((dims, dims)))[0]
