"""Retrieval metrics for float embeddings (cosine) and packed hash codes (Hamming).

- Recall@K (the deep-metric-learning papers' definition): a query is a hit if any of its K nearest
  neighbours shares its label. Rankings break distance ties by database id, and the tie-aware
  expected Recall@K (every order of tied items equally likely) is reported beside it, so results
  at 16-64 bits do not depend on database order.
- MAP@R and R-Precision (Musgrave, Belongie, Lim: "A Metric Learning Reality Check", ECCV 2020),
  R = the number of the query's positives in the database.
- mAP@k / mAP@all, the deep-hashing protocol (HashNet's convention): average precision over the
  top k, divided by the number of positives found there; 0 for a query that finds none.

Without a database each query searches the other queries, itself excluded. Work is done in chunks
of queries (``hashpa.metrics.knn``), so memory is bounded for SOP-sized sets (60k x 60k).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

from hashpa.errors import HashpaError
from hashpa.metrics import knn
from hashpa.metrics.ranking import full_ranking
from hashpa.metrics.relevance import check_labels, relevant

if TYPE_CHECKING:
    from hashpa.embed import Embedded


RECALL_KS = (1, 2, 4, 8)  # the Ks every Recall@K table reports
REPRESENTATIONS = {"float": "cosine", "codes": "hamming"}  # a model's two outputs and the metric of each


def model_scores(queries: Embedded, gallery: Embedded | None = None, device: str | None = None, ks: Sequence[int] = RECALL_KS) -> dict:
    """{"float": scores, "codes": scores} (``retrieval_scores`` records): each query searches the
    gallery, or without one the other queries. `device` computes distances with torch there."""
    return {
        name: retrieval_scores(queries.representation(name), queries.labels, None if gallery is None else gallery.representation(name),
                               None if gallery is None else gallery.labels, metric=metric, ks=ks, device=device)
        for name, metric in REPRESENTATIONS.items()
    }


def recall_at_k(
    queries: np.ndarray,
    query_labels: np.ndarray,
    ks: Sequence[int] = RECALL_KS,
    *,
    database: np.ndarray | None = None,
    database_labels: np.ndarray | None = None,
    metric: str = "cosine",
) -> dict[int, float]:
    """Recall@K with ties broken by database id.

    queries: float [Nq, D] for metric "cosine", packed uint8 codes [Nq, bits/8] for "hamming".
    query_labels: int [Nq], or multi-hot [Nq, C] (relevant: a label in common; ``metrics.relevance``).
    database / database_labels: likewise [Nd], or None to search the queries themselves (each
    query's own row excluded). Returns {K: recall in [0, 1]}: ``evaluate_retrieval``'s "recall", the
    one entry point of the metrics, which gives every other figure too.
    """
    result = evaluate_retrieval(queries, query_labels, database, database_labels, metric=metric, ks=ks, tie_aware=False, with_map_at_r=False)
    return result["recall"]


def retrieval_scores(
    queries: np.ndarray,
    query_labels: np.ndarray,
    database: np.ndarray | None = None,
    database_labels: np.ndarray | None = None,
    *,
    metric: str = "cosine",
    ks: Sequence[int] = RECALL_KS,
    tie_aware: bool | None = None,
    device: str | None = None,
    paired: bool = False,
) -> dict[str, float]:
    """``evaluate_retrieval``'s figures as one flat record: ``recall@K``, ``expected_recall@K``
    (tie-aware; by default for Hamming only, where ties are common) and ``map@r``. A K larger than
    the database can fill is left out (tiny test sets)."""
    tie_aware = metric == "hamming" if tie_aware is None else tie_aware
    searchable = (len(queries) if database is None else len(database)) - (database is None or paired)
    result = evaluate_retrieval(queries, query_labels, database, database_labels, metric=metric, ks=[k for k in ks if k <= searchable] or ks,
                                tie_aware=tie_aware, device=device, paired=paired)
    scores = {f"recall@{k}": v for k, v in result["recall"].items()}
    if tie_aware:
        scores.update({f"expected_recall@{k}": v for k, v in result["expected_recall"].items()})
    scores["map@r"] = result["map_at_r"]
    return scores


def evaluate_retrieval(
    queries: np.ndarray,
    query_labels: np.ndarray,
    database: np.ndarray | None = None,
    database_labels: np.ndarray | None = None,
    *,
    metric: str = "cosine",
    ks: Sequence[int] = RECALL_KS,
    tie_aware: bool = True,
    with_map_at_r: bool = True,
    map_at: Sequence[int | str] = (),
    device: str | None = None,
    chunk_bytes: int = knn.DEFAULT_CHUNK_BYTES,
    paired: bool = False,
) -> dict:
    """Every retrieval metric in one pass over the distance chunks: the metrics' entry point.

    Arguments as ``recall_at_k``; ``map_at`` lists cut-offs for the hashing mAP (ints, or "all");
    ``device`` computes the distances with torch there (e.g. "cuda") instead of on the CPU.
    ``paired``: database row i is query i in another form (e.g. its code for a float query): it is
    excluded from query i's results, as a query's own row is without a database.
    Returns a dict: recall {K: float}, expected_recall {K: float} (tie-aware, if tie_aware), map_at_r,
    r_precision (if with_map_at_r), map {cut-off: float}, queries, queries_without_positives, seconds.
    """
    started = time.perf_counter()
    ks = _check_ks(ks)
    q = knn.prepare(queries, metric, "queries")
    q_labels = check_labels(query_labels, q.shape[0], "query_labels")
    exclude_self = database is None or paired
    if database is None:
        db, db_labels = q, q_labels
    else:
        if database_labels is None:
            raise HashpaError("database_labels are required with a database")
        db = knn.prepare(database, metric, "database")
        db_labels = check_labels(database_labels, db.shape[0], "database_labels")
        if db.shape[1] != q.shape[1]:
            raise HashpaError(f"queries have {q.shape[1]} columns, the database {db.shape[1]}: they come from different models")
        if paired and db.shape[0] != q.shape[0]:
            raise HashpaError(f"paired queries and database need as many rows, got {q.shape[0]} and {db.shape[0]}")
    searchable = db.shape[0] - exclude_self
    if ks[-1] > searchable:
        raise HashpaError(f"Recall@{ks[-1]} needs more than {searchable} database items")

    parts: dict[str, list] = {}
    for start, dist in knn.distance_chunks(q, db, metric, device, chunk_bytes):
        rows = np.arange(dist.shape[0])
        positive = relevant(q_labels[start : start + len(rows)], db_labels)
        own = start + rows if exclude_self else None
        if exclude_self:
            dist[rows, own] = knn.excluded_distance(metric, db)
            positive[rows, own] = False

        def ranking(depth: int, chunk=q[start : start + len(rows)], dist=dist, own=own) -> np.ndarray:
            return knn.nearest(chunk, db, dist, min(depth, db.shape[0] - exclude_self), metric, device, own)

        for name, value in _chunk_metrics(dist, positive, ranking, ks, tie_aware, with_map_at_r, map_at).items():
            parts.setdefault(name, []).append(value)
    merged = {name: np.concatenate(values) for name, values in parts.items()}
    return _summarise(merged, ks, map_at, started)


def _chunk_metrics(dist, positive, ranking, ks, tie_aware, with_map_at_r, map_at) -> dict[str, np.ndarray]:
    """Per-query metrics of one chunk: distances [rows, N], positive bool [rows, N] and ranking(depth)
    -> ids [rows, depth] by the ranking rule."""
    n_positive = positive.sum(axis=1)
    depth = ks[-1]
    if with_map_at_r:
        depth = max(depth, int(n_positive.max()))
    int_cutoffs = [c for c in map_at if c != "all"]
    depth = min(max([depth, *int_cutoffs]), dist.shape[1])
    ranked = ranking(depth)
    relevant = np.take_along_axis(positive, ranked, axis=1)
    out = {"n_positive": n_positive, "hits": recall_hits(relevant, ks)}
    if tie_aware:
        out["expected_hits"] = expected_hits(dist, positive, ranked, ks)
    if with_map_at_r:
        out["ap_at_r"], out["r_precision"] = average_precision_at_r(relevant, n_positive)
    for cutoff in map_at:
        if cutoff == "all":
            full = np.take_along_axis(positive, full_ranking(dist), axis=1)
            out["map_all"] = average_precision(full, dist.shape[1])
        else:
            out[f"map_{cutoff}"] = average_precision(relevant, cutoff)
    return out


def recall_hits(relevant: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """relevant: bool [Nq, depth], ranked results' relevance. Returns bool [Nq, len(ks)]."""
    return np.stack([relevant[:, :k].any(axis=1) for k in ks], axis=1)


def expected_hits(dist: np.ndarray, positive: np.ndarray, ranked: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Probability [Nq, len(ks)] that the top K hold a positive when tied items come in random order."""
    out = np.empty((dist.shape[0], len(ks)))
    for column, k in enumerate(ks):
        kth = np.take_along_axis(dist, ranked[:, k - 1 : k], axis=1)
        closer, tied = dist < kth, dist == kth
        positive_closer = (closer & positive).any(axis=1)
        n_tied = tied.sum(axis=1)
        tied_negative = n_tied - (tied & positive).sum(axis=1)
        draws = k - closer.sum(axis=1)
        miss = np.ones(dist.shape[0])
        for i in range(k):  # P(all `draws` picks among the tied are negatives), hypergeometric
            active = i < draws
            miss[active] *= np.maximum(tied_negative[active] - i, 0) / (n_tied[active] - i)
        out[:, column] = np.where(positive_closer, 1.0, 1.0 - miss)
    return out


def average_precision_at_r(relevant: np.ndarray, n_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MAP@R and R-Precision per query from ranked relevance [Nq, depth >= R]; NaN where R = 0."""
    depth = relevant.shape[1]
    rank = np.arange(1, depth + 1)
    within_r = rank[None, :] <= n_positive[:, None]
    hits = relevant & within_r
    precision = np.cumsum(hits, axis=1) / rank[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision * hits).sum(axis=1) / n_positive
        r_precision = hits.sum(axis=1) / n_positive
    return np.where(n_positive > 0, ap, np.nan), np.where(n_positive > 0, r_precision, np.nan)


def average_precision(relevant: np.ndarray, cutoff: int) -> np.ndarray:
    """Hashing-protocol AP over the top `cutoff` of ranked relevance [Nq, depth]; 0 with no hit."""
    relevant = relevant[:, :cutoff]
    rank = np.arange(1, relevant.shape[1] + 1)
    precision = np.cumsum(relevant, axis=1) / rank[None, :]
    found = relevant.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision * relevant).sum(axis=1) / found
    return np.where(found > 0, ap, 0.0)


def _summarise(merged: dict, ks, map_at, started: float) -> dict:
    has_positive = merged["n_positive"] > 0
    result = {
        "recall": {k: float(v) for k, v in zip(ks, merged["hits"].mean(axis=0))},
        "queries": int(len(has_positive)),
        "queries_without_positives": int((~has_positive).sum()),
    }
    if "expected_hits" in merged:
        result["expected_recall"] = {k: float(v) for k, v in zip(ks, merged["expected_hits"].mean(axis=0))}
    if "ap_at_r" in merged:
        result["map_at_r"] = float(np.nanmean(merged["ap_at_r"])) if has_positive.any() else 0.0
        result["r_precision"] = float(np.nanmean(merged["r_precision"])) if has_positive.any() else 0.0
    if map_at:
        result["map"] = {c: float(merged[f"map_{c}"].mean()) for c in map_at}
    result["seconds"] = time.perf_counter() - started
    return result


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise HashpaError(f"ks must be positive integers, got {ks}")
    return ks
