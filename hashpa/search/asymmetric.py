"""Asymmetric search kernels: a query's real-valued projection (a linear quantiser's, before the
sign) scored against packed database codes read as +-1, score = projection . code (Gordo et al.,
"Asymmetric distances for binary embeddings", 2014). The database stays bits/8 bytes per item,
the query loses nothing to quantisation. Rankings follow ``hashpa.metrics.ranking``: score
descending, then row; equal codes tie exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashpa.codes import codes_to_signs
from hashpa.metrics.ranking import distinct_rows, merge_candidates, top_k

BLOCK = 65536  # distinct codes scored at a time by the scan
SCORES = 2**24  # query x code scores held at a time by the scan
LOOKUP_BELOW = 8  # fewer queries than this score by byte lookup tables instead of a matrix product
_BYTE_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32) * 2 - 1  # [256, 8]: byte -> +-1 bits


@dataclass
class DistinctCodes:
    """A database's codes with repeats folded: each distinct code is scored once, so all its rows
    get the same score (``hashpa.metrics.ranking.distinct_rows``)."""

    codes: np.ndarray  # uint8 [D, bytes]: the distinct codes, in the order of their first row
    first_rows: np.ndarray  # int64 [D]
    rows: np.ndarray  # int64 [N]: every row, grouped by its distinct code, ascending within a group
    starts: np.ndarray  # int64 [D + 1]: distinct code j owns rows[starts[j]:starts[j + 1]]

    @classmethod
    def of(cls, codes: np.ndarray) -> "DistinctCodes":
        repeated = distinct_rows(codes)
        if repeated is None:
            everything = np.arange(len(codes), dtype=np.int64)
            return cls(codes, everything, everything, np.arange(len(codes) + 1, dtype=np.int64))
        first, inverse = repeated
        return cls(codes[first], first.astype(np.int64), np.argsort(inverse, kind="stable").astype(np.int64),
                   np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(first)))]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.codes)

    def expand(self, negated: np.ndarray, chosen: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best rows, by (negated score, row), of the chosen distinct codes [Q, c] and their
        negated scores [Q, c]: each code stands for up to k of its rows."""
        counts = np.minimum(self.starts[chosen + 1] - self.starts[chosen], k)
        width = int(counts.max(initial=1))
        offsets = np.arange(width)
        rows = np.where(offsets < counts[..., None], self.rows[np.minimum(self.starts[chosen][..., None] + offsets, len(self.rows) - 1)], -1)
        scores = np.broadcast_to(negated[..., None], rows.shape)
        return merge_candidates(scores.reshape(len(rows), -1), rows.reshape(len(rows), -1), k)


def asymmetric_scan(projected: np.ndarray, codes: np.ndarray, k: int, distinct: DistinctCodes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact asymmetric top k: float32 queries [Q, bits] against packed codes uint8 [N, bits/8].
    Returns (scores float32 [Q, k], rows int64 [Q, k]). Memory: one block of BLOCK unpacked codes and
    about SCORES scores at a time. A few queries (a single search) look each code byte's partial
    score up in a 256-entry table per query and byte instead of unpacking the codes. `distinct`
    (DistinctCodes.of(codes)) may be passed in when the same codes are scanned again."""
    distinct = distinct or DistinctCodes.of(codes)
    kept = min(k, len(distinct))
    query_rows = max(1, SCORES // min(len(distinct), BLOCK))
    chunks = [slice(start, start + query_rows) for start in range(0, len(projected), query_rows)]
    best = [(np.empty((len(projected[rows]), 0), np.float32), np.empty((len(projected[rows]), 0), np.int64)) for rows in chunks]
    by_lookup = len(projected) < LOOKUP_BELOW
    tables = _byte_tables(projected) if by_lookup else None
    for start in range(0, len(distinct), BLOCK):
        block = distinct.codes[start : start + BLOCK]
        signs = None if by_lookup else codes_to_signs(block).T  # each block unpacked once
        for i, rows in enumerate(chunks):
            negated = -(_looked_up(tables[rows], block) if by_lookup else projected[rows] @ signs)
            local = top_k(negated, kept)  # by (score, column): distinct codes are in first-row order
            best[i] = merge_candidates(np.concatenate([best[i][0], np.take_along_axis(negated, local, axis=1)], axis=1),
                                       np.concatenate([best[i][1], local + start], axis=1), kept)
    expanded = [distinct.expand(negated, chosen, k) for negated, chosen in best]
    return -np.concatenate([e[0] for e in expanded]), np.concatenate([e[1] for e in expanded])


def rescore_asymmetric(projected: np.ndarray, candidates: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each query's candidate rows (int64 [Q, C], -1: none) by asymmetric score, the
    projection float32 [Q, bits] . the candidate's +-1 code from packed `codes` uint8 [N, bits/8].
    Scores add the code bytes' entries of per-query lookup tables in a fixed order, so equal codes
    tie exactly. Returns (scores [Q, k], rows [Q, k])."""
    scores = _looked_up(_byte_tables(projected), codes[np.maximum(candidates, 0)])
    scores[candidates < 0] = -np.inf
    negated, ids = merge_candidates(-scores, candidates, k)
    return -negated, ids


def _byte_tables(projected: np.ndarray) -> np.ndarray:
    """float32 [Q, bytes, 256]: entry [q, j, v] is query q's partial score of code byte j = v."""
    return np.einsum("qjb,vb->qjv", projected.astype(np.float32).reshape(len(projected), -1, 8), _BYTE_SIGNS)


def _looked_up(tables: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """float32 [Q, N]: sum over bytes j, in order, of the table entries of code n's byte j; codes uint8
    [N, bytes] shared by all queries (plain indexing, much faster there than take_along_axis),
    or [Q, N, bytes] per query."""
    if codes.ndim == 2:
        entries = lambda j: tables[:, j, codes[:, j]]  # noqa: E731
    else:
        entries = lambda j: np.take_along_axis(tables[:, j], codes[:, :, j], axis=1)  # noqa: E731
    scores = entries(0)
    for j in range(1, codes.shape[-1]):
        scores += entries(j)
    return scores
