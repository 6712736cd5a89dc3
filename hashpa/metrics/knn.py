"""Exact nearest neighbours in bounded memory, ranked by ``hashpa.metrics.ranking``'s rule.

Distances are "smaller is closer": ``-cosine`` for float embeddings (float32) and the Hamming
distance for packed codes (int32). Queries are processed in chunks so that memory stays near
``chunk_bytes`` whatever the database size; on CPU the distances come from BLAS (float) and FAISS's
popcount kernel (binary), on a torch device from a matrix product there.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

from hashpa.errors import HashpaError
from hashpa.metrics.ranking import distinct_rows, top_k

log = logging.getLogger(__name__)

METRICS = ("cosine", "hamming")
DEFAULT_CHUNK_BYTES = 256 * 2**20


def prepare(x: np.ndarray, metric: str, what: str) -> np.ndarray:
    """Check and normalise an input array: float [N, D] rows L2-normalised for cosine, uint8 [N, B] for hamming."""
    if metric not in METRICS:
        raise HashpaError(f"unknown metric {metric!r}; choose 'cosine' (float embeddings) or 'hamming' (packed codes)")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise HashpaError(f"{what} must be a non-empty 2-D array [N, dim], got shape {x.shape}")
    if metric == "hamming":
        if x.dtype != np.uint8:
            raise HashpaError(f"{what}: metric 'hamming' takes packed uint8 codes [N, bits/8], got {x.dtype}")
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise HashpaError(f"{what}: metric 'cosine' takes float embeddings, got {x.dtype} (packed codes use metric='hamming')")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise HashpaError(f"{what} contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def excluded_distance(metric: str, database: np.ndarray):
    """A distance larger than any real one, given to a query's own row when it is excluded."""
    return np.float32(np.inf) if metric == "cosine" else np.int32(database.shape[1] * 8 + 1)


def distance_chunks(
    queries: np.ndarray,
    database: np.ndarray,
    metric: str,
    device: str | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first query row, distances [rows, N]) over all queries; inputs come from ``prepare``.
    Equal float database rows get equal distances (``distinct_rows``)."""
    rows = max(1, chunk_bytes // (24 * database.shape[0]))
    repeated = distinct_rows(database) if metric == "cosine" else None
    distinct, inverse = (database, None) if repeated is None else (database[repeated[0]], repeated[1])
    compute = _torch_distances(distinct, metric, device) if device else _cpu_distances(distinct, metric)
    for start in range(0, queries.shape[0], rows):
        distances = compute(queries[start : start + rows])
        yield start, distances if inverse is None else distances[:, inverse]


def exact_knn(
    queries: np.ndarray,
    database: np.ndarray | None = None,
    k: int = 10,
    metric: str = "cosine",
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest neighbours, ties by id.

    queries: float32 [Nq, D] (cosine) or uint8 [Nq, B] (hamming); database likewise, or None to
    search the queries themselves with each query's own row excluded.
    Returns (scores [Nq, k]: cosine similarity or Hamming distance, ids int64 [Nq, k]).
    Hamming on the CPU is FAISS's ``knn_hamming``, whose heap keeps (distance, id) order.
    """
    q = prepare(queries, metric, "queries")
    db = q if database is None else prepare(database, metric, "database")
    exclude_self = database is None
    available = db.shape[0] - exclude_self
    if not 1 <= k <= available:
        raise HashpaError(f"k must be between 1 and {available} (the searchable database size), got {k}")
    if metric == "hamming" and not device:  # no distance matrix needed
        ids = nearest(q, db, None, k, metric, device, np.arange(len(q)) if exclude_self else None)
        return _hamming_of(q, db, ids), ids
    all_ids, all_scores = [], []
    for start, dist in distance_chunks(q, db, metric, device):
        own = start + np.arange(dist.shape[0]) if exclude_self else None
        if own is not None:
            dist[np.arange(len(own)), own] = excluded_distance(metric, db)
        ids = nearest(q[start : start + len(dist)], db, dist, k, metric, device, own)
        scores = np.take_along_axis(dist, ids, axis=1)
        all_ids.append(ids)
        all_scores.append(-scores if metric == "cosine" else scores)
    return np.concatenate(all_scores), np.concatenate(all_ids).astype(np.int64)


def nearest(queries: np.ndarray, database: np.ndarray, distances: np.ndarray | None, k: int, metric: str, device: str | None,
            own: np.ndarray | None = None) -> np.ndarray:
    """ids int64 [Nq, k] of each query's k nearest database rows by the ranking rule, without row
    own[i] for query i when `own` is given. Hamming on the CPU comes from FAISS's knn_hamming (its
    heap keeps (distance, id) order: tested against brute force); otherwise the top k of
    `distances` [Nq, N], in which the own rows must already be excluded."""
    if metric == "hamming" and not device:
        import faiss

        _, ids = faiss.knn_hamming(queries, database, k + (own is not None))
        if own is None:
            return ids
        keep = ids != own[:, None]
        keep[keep.all(axis=1), -1] = False  # the own row ranked beyond k: drop the last instead
        return ids[keep].reshape(-1, k)
    return top_k(distances, k).astype(np.int64)


def _hamming_of(queries: np.ndarray, database: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """int32 [Nq, k]: the Hamming distance of each query to its rows `ids`."""
    return np.bitwise_count(queries[:, None, :] ^ database[ids]).sum(axis=2, dtype=np.int32)


def _cpu_distances(database: np.ndarray, metric: str):
    if metric == "cosine":
        return lambda q: -(q @ database.T)
    try:
        import faiss
    except ImportError:  # faiss-cpu is a dependency, but a GPU image may lack it
        from hashpa.codes import hamming_distances

        return lambda q: hamming_distances(q, database)

    def hamming(q: np.ndarray) -> np.ndarray:
        out = np.empty((q.shape[0], database.shape[0]), dtype=np.int32)
        faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(database), q.shape[0], database.shape[0], q.shape[1], faiss.swig_ptr(out))
        return out

    return hamming


def _torch_distances(database: np.ndarray, metric: str, device: str):
    import torch

    from hashpa.codes import codes_to_signs

    if metric == "cosine":
        db = torch.from_numpy(database).to(device)
        return lambda q: (-(torch.from_numpy(q).to(device) @ db.T)).cpu().numpy()
    bits = database.shape[1] * 8
    db = torch.from_numpy(codes_to_signs(database)).to(device)

    def hamming(q: np.ndarray) -> np.ndarray:
        dot = torch.from_numpy(codes_to_signs(q)).to(device) @ db.T
        return ((bits - dot) / 2).round().to(torch.int32).cpu().numpy()

    return hamming
