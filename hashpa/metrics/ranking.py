"""The ranking rule, written once: smaller distance first, equal distances by ascending id, missing
ids (-1) last. Every ranking hashpa returns (the evaluator, every search mode, the benchmarks)
comes from these functions, so equal scores never depend on BLAS blocking, thread count or the
order candidates arrived in.

Distances are "smaller is closer": Hamming distances (integers), ``-cosine``, ``-score``.
"""

from __future__ import annotations

import numpy as np

from hashpa.errors import HashpaError

MISSING = -1  # the id of an empty candidate slot (FAISS's convention)


def merge_candidates(distances: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k candidates with the smallest (distance, id); ids of MISSING go last.

    distances: [Q, C] (any real or integer dtype), ids: int64 [Q, C]. Returns (distances [Q, k], ids [Q, k]).
    Also merges several candidate lists: concatenate them along the columns first.
    """
    k = min(k, distances.shape[1])
    missing = ids < 0
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, ids), np.where(missing, np.inf, distances + 0)), axis=1)[:, :k]
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(ids, order, axis=1)


def top_k(distances: np.ndarray, k: int) -> np.ndarray:
    """Column indices [rows, k] of the k closest columns of every row of a dense distance matrix, by
    (distance, column). NaN ranks after every number; -0.0 equals 0.0."""
    n = distances.shape[1]
    k = min(k, n)
    if k == n:
        return full_ranking(distances)
    if distances.dtype.kind != "f":  # integer (Hamming) distances tie at the k-th place in almost every row
        chosen = _first_k_by_keys(distances, k)
    else:
        chosen = np.argpartition(distances, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(distances, chosen, axis=1).max(axis=1)
        # where the k-th distance is shared beyond the partition (ties, NaN), the partition chose by chance
        ambiguous = (np.count_nonzero(distances <= kth[:, None], axis=1) != k) | np.isnan(kth)
        if ambiguous.any():
            chosen[ambiguous] = _first_k_by_keys(distances[ambiguous], k)
    return merge_candidates(np.take_along_axis(distances, chosen, axis=1), chosen, k)[1]


def full_ranking(distances: np.ndarray) -> np.ndarray:
    """Column indices [rows, N]: every column, by (distance, column)."""
    return np.argsort(ranking_keys(distances), axis=1)


def ranking_keys(distances: np.ndarray) -> np.ndarray:
    """int64 keys [rows, N] whose ascending order is (distance, column): unique, so any selection is exact."""
    n = distances.shape[1]
    if n >= 2**31:
        raise HashpaError("rankings over 2**31 items or more are not supported")
    if distances.dtype.kind == "f":
        bits = (distances.astype(np.float32) + np.float32(0.0)).view(np.int32)  # + 0.0 folds -0.0 onto 0.0
        order = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64) + 2**31
    else:
        order = distances.astype(np.int64)
    return order * n + np.arange(n, dtype=np.int64)


def _first_k_by_keys(distances: np.ndarray, k: int) -> np.ndarray:
    return np.argpartition(ranking_keys(distances), k - 1, axis=1)[:, :k]


def first_k_of_segments(limits: np.ndarray, distances: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS range-search results (row r owns entries limits[r]:limits[r+1], at least k of them):
    each row's k entries with the smallest (distance, id), as arrays [rows, k]."""
    limits = limits.astype(np.int64)
    owner = np.repeat(np.arange(len(limits) - 1), np.diff(limits))
    order = np.lexsort((ids, distances, owner))
    keep = order[np.arange(len(order)) - limits[owner] < k]  # sorting kept every row's entries in its own span
    return distances[keep].reshape(-1, k), ids[keep].reshape(-1, k)


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first [D]: the first row of each distinct row, in row order; inverse [N]: the distinct row
    of each row, so that rows[first][inverse] == rows), or None when no row repeats.

    A matrix product may round equal rows differently (BLAS kernels treat a block's edges apart),
    which would order equal items by chance. Scoring each distinct row once and giving every copy
    its score makes equal rows tie exactly, and the ranking rule then orders them by id."""
    contiguous = np.ascontiguousarray(rows)
    as_bytes = contiguous.view(np.dtype((np.void, contiguous.dtype.itemsize * contiguous.shape[1]))).ravel()
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    if len(first) == len(rows):
        return None
    order = np.argsort(first)
    renumbered = np.empty_like(order)
    renumbered[order] = np.arange(len(order))
    return first[order], renumbered[inverse.reshape(-1)]
