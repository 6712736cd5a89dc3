"""Hash centres: one target code in {-1, +1}^bits per class, as far apart as the length allows.

Rows of a Sylvester Hadamard matrix and their negations are pairwise at Hamming distance bits/2
(or bits, a row and its negation): with at most 2 * bits classes (bits a power of two, as 16-256
are) the centres are those rows, in order; with more classes the rest are random signs drawn with
`seed` (Yuan et al., "Central Similarity Quantization", CVPR 2020, section 3.2). The same centres
serve CSQ and OrthoHash."""

from __future__ import annotations

import torch

from hashpa.errors import HashpaError


def hadamard(n: int) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix (n a power of two), entries +-1."""
    if n < 1 or n & (n - 1):
        raise HashpaError(f"a Sylvester Hadamard matrix needs a power of two, got {n}")
    matrix = torch.ones(1, 1)
    while matrix.shape[0] < n:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)], 0)
    return matrix


def hash_centers(num_classes: int, bits: int, seed: int = 0) -> torch.Tensor:
    """float32 [num_classes, bits] of +-1: Hadamard rows and their negations first, random signs after."""
    if num_classes < 1:
        raise HashpaError(f"hash centres need at least one class, got {num_classes}")
    rows = []
    if bits & (bits - 1) == 0:
        square = hadamard(bits)
        rows.append(torch.cat([square, -square])[:num_classes])
    missing = num_classes - sum(len(r) for r in rows)
    if missing > 0:
        generator = torch.Generator().manual_seed(seed)
        rows.append(torch.randint(0, 2, (missing, bits), generator=generator).float() * 2 - 1)
    return torch.cat(rows)
