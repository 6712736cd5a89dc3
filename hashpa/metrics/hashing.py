"""The deep-hashing protocol (the tables of HashNet, DeepHash-pytorch, CSQ, OrthoHash): mAP@K and
mAP@ALL over the whole ranking, precision@K, precision within Hamming radius 2 and
precision-recall curves.

- Relevance: a shared label (``hashpa.metrics.relevance``: single labels, or multi-labels with at
  least one in common, as NUS-WIDE and MS-COCO are scored).
- mAP@K (HashNet's convention): per query, the mean of precision@i over the relevant items i among
  the top K, divided by the number of relevant items found there; 0 for a query that finds none.
  mAP@ALL is the same over the whole database.
- Ties: the by-id values rank equal distances by database row (``hashpa.metrics.ranking``); for
  Hamming distances ``map@all_tie_aware`` is the expectation over every order of the tied items
  (McSherry & Najork, ECIR 2008), exactly, so the reader sees how much the tie order moves mAP.
- P@H<=r: per query, the fraction of relevant items among those within Hamming radius r; queries
  that find nothing inside the radius count as 0 (the papers' convention) and are counted.
- PR curves: over Hamming radii 0..bits for codes (precision averaged over the queries that
  retrieve anything at that radius, recall over the queries that have relevant items) and over
  rank cut-offs for either representation (float embeddings have no radius to share).

Without a database each query searches the other queries, itself excluded. Work is done in chunks
of queries (``hashpa.metrics.knn``); each chunk is ranked in full, so a chunk costs [rows, N] keys.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hashpa.errors import HashpaError
from hashpa.metrics import knn
from hashpa.metrics.ranking import full_ranking
from hashpa.metrics.relevance import check_labels, relevant
from hashpa.metrics.retrieval import average_precision

MAP_CUTOFFS = (1000, "all")
PRECISION_KS = (100, 500, 1000)
RADIUS = 2
RANK_CURVE_POINTS = 24


FULL_RANKING_PAIRS = 4 * 10**8  # query-database pairs the protocol ranks in full, at most: beyond, a report leaves it out


def too_many_pairs(queries: int, database: int) -> str | None:
    """Why the protocol is left out of a report (every query ranks the whole database), or None when
    `queries` x `database` is within FULL_RANKING_PAIRS."""
    if queries * database <= FULL_RANKING_PAIRS:
        return None
    return f"{queries:,} queries x {database:,} images is more than {FULL_RANKING_PAIRS:,} pairs to rank in full (query a sample)"


def hashing_scores(
    queries: np.ndarray,
    query_labels: np.ndarray,
    database: np.ndarray | None = None,
    database_labels: np.ndarray | None = None,
    metric: str = "hamming",
    map_at: Sequence[int | str] = MAP_CUTOFFS,
    precision_at: Sequence[int] = PRECISION_KS,
    radius: int = RADIUS,
    own_rows: np.ndarray | None = None,
    device: str | None = None,
    chunk_bytes: int = knn.DEFAULT_CHUNK_BYTES // 4,
) -> dict:
    """The deep-hashing figures of `queries` against `database` (or each other, leave-one-out).
    `own_rows` (int [Q]): the database row that is each query itself, left out of its results
    (queries taken from the database; without a database, each query's own row).

    queries / database: packed uint8 codes [N, bits/8] (metric "hamming") or float embeddings
    [N, dim] ("cosine"); labels int [N] or multi-hot [N, C]. A precision@K beyond the database is
    reported at its size (under that K). Returns a flat record: ``map@K``, ``map@all``, ``precision@K``, with
    Hamming also ``map@all_tie_aware``, ``p@h<=R``, ``p@h<=R_empty`` (queries finding nothing
    inside the radius) and ``pr_curve_radius`` {"radius", "precision", "recall"}; always
    ``pr_curve_rank`` {"rank", "precision", "recall"}, ``queries`` and ``queries_without_relevant``.
    """
    q = knn.prepare(queries, metric, "queries")
    q_labels = check_labels(query_labels, q.shape[0], "query_labels")
    exclude_self = database is None or own_rows is not None
    db, db_labels = (q, q_labels) if database is None else (knn.prepare(database, metric, "database"), None)
    if database is not None:
        if database_labels is None:
            raise HashpaError("database_labels are required with a database")
        db_labels = check_labels(database_labels, db.shape[0], "database_labels")
        if db.shape[1] != q.shape[1]:
            raise HashpaError(f"queries have {q.shape[1]} columns, the database {db.shape[1]}: they come from different models")
    own = np.arange(q.shape[0]) if own_rows is None else np.asarray(own_rows, dtype=np.int64)
    if exclude_self and own.shape != (q.shape[0],):
        raise HashpaError(f"own_rows must give one database row per query, got shape {own.shape}")
    searchable = db.shape[0] - exclude_self
    if searchable < 1:
        raise HashpaError("the deep-hashing metrics need at least one database item besides each query")
    cutoffs = [c if c == "all" else int(c) for c in map_at]  # the top K of fewer items is all of them: mAP@K is mAP@ALL there
    ks = sorted({min(int(k), searchable) for k in precision_at})
    curve_at = np.unique(np.geomspace(1, searchable, RANK_CURVE_POINTS).round().astype(np.int64))
    bits = db.shape[1] * 8
    parts: dict[str, list] = {}
    for start, dist in knn.distance_chunks(q, db, metric, device, chunk_bytes):
        rows = np.arange(dist.shape[0])
        positive = relevant(q_labels[start : start + len(rows)], db_labels)
        counted = np.ones(dist.shape, dtype=bool)
        if exclude_self:
            mine = own[start : start + len(rows)]
            dist[rows, mine] = knn.excluded_distance(metric, db)
            positive[rows, mine] = False
            counted[rows, mine] = False
        ranked = np.take_along_axis(positive, full_ranking(dist), axis=1)[:, :searchable]
        chunk = _ranked_metrics(ranked, cutoffs, ks, curve_at)
        if metric == "hamming":
            chunk.update(_radius_metrics(dist, positive, counted, bits, radius))
        for name, value in chunk.items():
            parts.setdefault(name, []).append(value)
    merged = {name: np.concatenate(values) for name, values in parts.items()}
    return _summary(merged, cutoffs, ks, curve_at, metric, radius, bits)


def _ranked_metrics(ranked: np.ndarray, cutoffs: list, ks: list[int], curve_at: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query figures from the relevance of the full by-id ranking [rows, searchable]."""
    found = np.cumsum(ranked, axis=1)
    out = {"n_relevant": found[:, -1]}
    for cutoff in cutoffs:
        out[f"map@{cutoff}"] = average_precision(ranked, ranked.shape[1] if cutoff == "all" else min(cutoff, ranked.shape[1]))
    for k in ks:
        out[f"precision@{k}"] = found[:, k - 1] / k
    out["curve_found"] = found[:, curve_at - 1]
    return out


def _radius_metrics(dist: np.ndarray, positive: np.ndarray, counted: np.ndarray, bits: int, radius: int) -> dict[str, np.ndarray]:
    """Per-query figures from the histograms of Hamming distances (all items, relevant items) [rows, bits + 1]."""
    rows = dist.shape[0]
    bins = np.where(counted, np.minimum(dist, bits), 0) + (bits + 1) * np.arange(rows)[:, None]
    items = np.bincount(bins.ravel(), weights=counted.ravel(), minlength=rows * (bits + 1)).reshape(rows, bits + 1)
    hits = np.bincount(bins.ravel(), weights=positive.ravel(), minlength=rows * (bits + 1)).reshape(rows, bits + 1)
    retrieved, true = np.cumsum(items, axis=1), np.cumsum(hits, axis=1)
    return {"retrieved": retrieved, "true": true, "expected_ap_all": expected_average_precision(items, hits),
            f"p@h<={radius}": np.divide(true[:, radius], retrieved[:, radius], out=np.zeros(rows), where=retrieved[:, radius] > 0)}


def expected_average_precision(items: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """AP over the whole ranking [rows], expected over every order of tied items: `items` and `hits`
    [rows, levels] count the items and the relevant items at each distance level, nearest first.

    A relevant item of a level with n items (r relevant), after c items (h relevant) of nearer
    levels, sits at each of the level's places p = 1..n alike; there, r - 1 other relevant items
    precede it with p - 1 of n - 1 places, so its expected precision is
    (h + 1 + (p - 1)(r - 1)/(n - 1)) / (c + p). Summed over p with S = H(c + n) - H(c)
    (harmonic numbers), the level adds r/n ((h + 1) S + (r - 1)/(n - 1) (n - (c + 1) S))."""
    before = np.cumsum(items, axis=1) - items
    relevant_before = np.cumsum(hits, axis=1) - hits
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(items.sum(axis=1).max()) + 1))])
    n, r, c, h = items, hits, before, relevant_before
    spread = harmonic[(c + n).astype(np.int64)] - harmonic[c.astype(np.int64)]
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(n > 1, (r - 1) / (n - 1) * (n - (c + 1) * spread), 0.0)
        level = np.where(r > 0, r / n * ((h + 1) * spread + within), 0.0)
        total = hits.sum(axis=1)
        return np.where(total > 0, level.sum(axis=1) / total, 0.0)


def _summary(merged: dict, cutoffs: list, ks: list[int], curve_at: np.ndarray, metric: str, radius: int, bits: int) -> dict:
    has_relevant = merged["n_relevant"] > 0
    scores = {f"map@{c}": float(merged[f"map@{c}"].mean()) for c in cutoffs}
    scores.update({f"precision@{k}": float(merged[f"precision@{k}"].mean()) for k in ks})
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = merged["curve_found"][has_relevant] / merged["n_relevant"][has_relevant, None]
    scores["pr_curve_rank"] = {"rank": curve_at.tolist(), "precision": (merged["curve_found"] / curve_at).mean(axis=0).tolist(),
                               "recall": recall.mean(axis=0).tolist() if has_relevant.any() else [0.0] * len(curve_at)}
    if metric == "hamming":
        scores["map@all_tie_aware"] = float(merged["expected_ap_all"].mean())
        scores[f"p@h<={radius}"] = float(merged[f"p@h<={radius}"].mean())
        scores[f"p@h<={radius}_empty"] = int((merged["retrieved"][:, radius] == 0).sum())
        retrieving = merged["retrieved"] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(retrieving, merged["true"] / merged["retrieved"], np.nan)
            recall = merged["true"][has_relevant] / merged["n_relevant"][has_relevant, None]
        scores["pr_curve_radius"] = {"radius": list(range(bits + 1)),
                                     "precision": [float(np.nanmean(column)) if np.isfinite(column).any() else None for column in precision.T],
                                     "recall": recall.mean(axis=0).tolist() if has_relevant.any() else [0.0] * (bits + 1)}
    scores["queries"] = int(len(has_relevant))
    scores["queries_without_relevant"] = int((~has_relevant).sum())
    return scores
