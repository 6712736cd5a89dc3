"""The search modes over an open index directory: float (cosine), binary (Hamming), rerank (a
Hamming shortlist re-ranked by exact cosine), rerank-codes (the same shortlist re-ranked by the
embeddings compressed at index time, ``hashpa.compressed``) and asymmetric (the query's
projection against the database's codes, for codes fitted to the database).

Rankings follow ``hashpa.metrics.ranking``: equal scores are ordered by store row. Flat indexes
return the exact top k under that rule; approximate indexes (HNSW, IVF) return their own
candidates, re-sorted by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hashpa.errors import HashpaError
from hashpa.indexdir.layout import EXACT_INDEXES
from hashpa.metrics.ranking import first_k_of_segments, merge_candidates
from hashpa.quantizers import pack_signs
from hashpa.search.asymmetric import DistinctCodes, asymmetric_scan, rescore_asymmetric

if TYPE_CHECKING:
    from hashpa.indexdir.open import IndexDir

@dataclass(frozen=True)
class ModeFacts:
    """What a search mode is, for every place that shows or measures one (the command line, the
    server, compare)."""

    score: str  # what its scores are
    score_short: str  # the same, for a terminal column
    whole_scores: bool  # the scores are whole numbers (Hamming distances)
    shortlist: bool  # whether a shortlist (--shortlist) applies
    needs: str  # what the index must hold besides its FAISS indexes: "" (nothing), "fitted" (codes fitted to the database,
    #             hashpa index --codes itq) or "compressed" (compressed embeddings, hashpa index --rerank-codes)
    index_kind: str  # the kind of FAISS index it searches ("float" or "binary"; asymmetric: for its shortlist only)
    reads_beside: tuple[str, ...]  # what it reads besides that index: "floats" (every float embedding), "codes" (every code, and their
    #                                quantiser), "compressed" (every compressed embedding, and their quantiser)


MODE_FACTS = {
    "float": ModeFacts("cosine", "cosine", False, False, "", "float", ()),
    "binary": ModeFacts("Hamming distance", "Hamming", True, False, "", "binary", ()),
    "rerank": ModeFacts("cosine", "cosine", False, True, "", "binary", ("floats",)),
    "rerank-codes": ModeFacts("cosine with the decoded embedding", "cosine~", False, True, "compressed", "binary", ("compressed",)),
    "asymmetric": ModeFacts("projection . code", "score", False, True, "fitted", "binary", ("codes",)),
}
NEEDS = {  # what each kind of ModeFacts.needs is, and how an index gets it
    "fitted": ("codes fitted to the database", "hashpa index ... --codes itq"),
    "compressed": ("compressed embeddings", "hashpa index ... --rerank-codes SPEC (PQ16, SQ8, float16 ...)"),
}
MODES = tuple(MODE_FACTS)
EXTRA_CANDIDATES = 16  # fetched beyond k to see whether ties at the k-th place continue
SHORTLIST_PER_K = 10  # the default shortlist: 10 k candidates
RERANK_CODES_SHORTLIST = 500  # rerank-codes' default shortlist at least: quantised scores need more candidates to find what the floats find
GATHERED_FLOATS = 1 << 22  # float entries of candidate vectors held at once while re-ranking


@dataclass
class SearchResult:
    scores: np.ndarray  # [Q, k]: cosine similarity (float, rerank; rerank-codes: with the decoded embedding), Hamming distance (binary)
    #                     or projection . code (asymmetric)
    ids: np.ndarray  # int64 [Q, k]: store rows


def default_spec(mode: str, shortlist: int | None = None) -> str | None:
    """The FAISS index a mode searches unless told otherwise: the exact one of its kind; None for the
    asymmetric scan, which searches the codes themselves unless it has a shortlist to fetch."""
    if mode == "asymmetric" and shortlist is None:
        return None
    return EXACT_INDEXES[MODE_FACTS[mode].index_kind]


def supports(store, mode: str) -> bool:
    """Whether an index whose store is `store` holds what `mode` needs (``ModeFacts.needs``)."""
    needs = MODE_FACTS[mode].needs
    return not needs or getattr(store, needs) is not None


def kept_bytes(ix: IndexDir, mode: str, spec: str | None) -> int:
    """What searching `ix` in `mode` keeps, in bytes: the file of the FAISS index `spec` it searches
    (None: none), what the mode reads besides it for every image (``ModeFacts.reads_beside``) and
    its quantisers (``shared_bytes``)."""
    index_file = ix.meta.entry(MODE_FACTS[mode].index_kind, spec)["bytes"] if spec else 0
    return int(index_file + len(ix) * _beside_per_image(ix, mode) + shared_bytes(ix, mode))


def image_bytes(ix: IndexDir, mode: str, spec: str | None) -> float:
    """What each image adds to what searching `ix` in `mode` keeps: its entry in the FAISS index
    `spec` (the vector itself in Flat and BFlat, whose files add only a header; the file over the
    images for the others, whose graphs and lists grow with them) and what the mode reads besides."""
    store, kind = ix.store, MODE_FACTS[mode].index_kind
    if spec is None:
        entry = 0.0
    elif spec == EXACT_INDEXES[kind]:
        entry = float(store.embeddings.shape[1] * 4 if kind == "float" else store.index_codes.shape[1])
    else:
        entry = ix.meta.entry(kind, spec)["bytes"] / len(ix)
    return entry + _beside_per_image(ix, mode)


def _beside_per_image(ix: IndexDir, mode: str) -> int:
    facts, store = MODE_FACTS[mode], ix.store
    beside = 0
    if "floats" in facts.reads_beside:
        beside += store.embeddings.itemsize * store.embeddings.shape[1]
    if "codes" in facts.reads_beside:
        beside += store.index_codes.shape[1]
    if "compressed" in facts.reads_beside:
        beside += store.compressed.code_size
    return beside


def shared_bytes(ix: IndexDir, mode: str) -> int:
    """What of ``kept_bytes`` searching in `mode` keeps once, whatever the number of images: the
    quantiser of codes fitted to the database, the codec of compressed embeddings."""
    facts, store = MODE_FACTS[mode], ix.store
    shared = 0
    if "codes" in facts.reads_beside and store.fitted:
        shared += store.fitted.hasher.mean.nbytes + store.fitted.hasher.projection.nbytes
    if "compressed" in facts.reads_beside:
        shared += store.compressed.codec.nbytes
    return int(shared)


def check_request(ix: IndexDir, mode: str, k: int, shortlist: int | None) -> None:
    if mode not in MODES:
        raise HashpaError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    if not 1 <= k <= len(ix):
        raise HashpaError(f"-k must be between 1 and the index size {len(ix)}, got {k}")
    if shortlist is not None and shortlist < 1:
        raise HashpaError(f"--shortlist must be at least 1 (it is raised to -k when smaller), got {shortlist}")
    if not supports(ix.store, mode):
        what, how = NEEDS[MODE_FACTS[mode].needs]
        raise HashpaError(f"{mode} search needs {what}: rebuild {ix.path} with {how}")


def search_float(ix: IndexDir, embeddings: np.ndarray, k: int, spec: str = "Flat") -> SearchResult:
    queries = np.ascontiguousarray(embeddings, dtype=np.float32)
    similarities, candidates = ix.faiss_index("float", spec).search(queries, _fetch(ix, k))
    tied = _ties_may_continue(ix, -similarities, k, spec == EXACT_INDEXES["float"], tolerance=1e-6)
    scores = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    scores[~tied], ids[~tied] = _rank_by_cosine(ix, queries[~tied], candidates[~tied], k)
    if tied.any():  # rare: equal scores may continue past the fetched candidates
        everything = np.broadcast_to(np.arange(len(ix)), (int(tied.sum()), len(ix)))
        scores[tied], ids[tied] = _rank_by_cosine(ix, queries[tied], everything, k)
    return SearchResult(scores, ids)


def search_binary(ix: IndexDir, codes: np.ndarray, k: int, spec: str = "BFlat") -> SearchResult:
    queries = np.ascontiguousarray(codes, dtype=np.uint8)
    index = ix.faiss_index("binary", spec)
    distances, candidates = index.search(queries, _fetch(ix, k))
    tied = _ties_may_continue(ix, distances, k, spec == EXACT_INDEXES["binary"])
    out_distances = np.empty((len(queries), k), np.int32)
    ids = np.empty((len(queries), k), np.int64)
    out_distances[~tied], ids[~tied] = merge_candidates(distances[~tied], candidates[~tied], k)
    for radius in np.unique(distances[tied, k - 1]):  # common at 16-64 bits: fetch every item at the k-th distance
        rows = np.flatnonzero(tied & (distances[:, k - 1] == radius))
        limits, found_distances, found_ids = index.range_search(queries[rows], int(radius) + 1)  # distance < radius + 1
        out_distances[rows], ids[rows] = first_k_of_segments(limits, found_distances, found_ids, k)
    return SearchResult(out_distances, ids)


def default_shortlist(mode: str, k: int) -> int:
    """The Hamming candidates `mode` re-ranks unless told: SHORTLIST_PER_K * k, and for rerank-codes
    at least RERANK_CODES_SHORTLIST (the size at which its Recall@1 comes within 0.2 points of
    re-ranking every image, on the benchmark pages)."""
    return max(SHORTLIST_PER_K * k, RERANK_CODES_SHORTLIST if mode == "rerank-codes" else 0)


def shortlist_rows(ix: IndexDir, codes: np.ndarray, mode: str, k: int, shortlist: int | None, spec: str) -> np.ndarray:
    """int64 [Q, S]: the S = `shortlist` (default ``default_shortlist``, at least k, at most the
    index size) nearest codes to each query's by Hamming distance, as the binary index `spec`
    returns them. Unlike binary search, equal distances at the S-th place are not completed by a second,
    range search: FAISS's BFlat keeps the lowest rows among them already (a test holds it to that),
    and the candidates are re-scored anyway."""
    size = min(max(shortlist or default_shortlist(mode, k), k), len(ix))
    distances, candidates = ix.faiss_index("binary", spec).search(np.ascontiguousarray(codes, dtype=np.uint8), size)
    return merge_candidates(distances, candidates, size)[1]


def search_rerank(ix: IndexDir, embeddings: np.ndarray, codes: np.ndarray, k: int, shortlist: int | None = None, spec: str = "BFlat") -> SearchResult:
    """Hamming shortlist (``shortlist_rows``) from the binary index, re-ranked by exact cosine."""
    candidates = shortlist_rows(ix, codes, "rerank", k, shortlist, spec)
    return SearchResult(*_rank_by_cosine(ix, np.ascontiguousarray(embeddings, dtype=np.float32), candidates, k))


def search_rerank_codes(ix: IndexDir, embeddings: np.ndarray, codes: np.ndarray, k: int, shortlist: int | None = None,
                        spec: str = "BFlat") -> SearchResult:
    """Hamming shortlist (``shortlist_rows``) from the binary index, re-ranked by the cosine of the
    float query with each row's decoded compressed embedding (``CompressedVectors.scores``): the
    float32 embeddings are not read."""
    candidates = shortlist_rows(ix, codes, "rerank-codes", k, shortlist, spec)
    return SearchResult(*_best_by_score(np.ascontiguousarray(embeddings, dtype=np.float32), candidates, k, ix.store.compressed.scores))


def search_asymmetric(ix: IndexDir, embeddings: np.ndarray, k: int, shortlist: int | None = None, spec: str = "BFlat",
                      distinct: DistinctCodes | None = None) -> SearchResult:
    """score = ((e - mean) @ projection) . b over the database's +-1 codes b (quantiser and codes
    fitted by ``hashpa index --codes itq``); the k best by (score descending, row). Without
    `shortlist` an exact scan of every code; with it, the `shortlist` nearest codes by Hamming
    distance from the binary index `spec` (the query's own code), re-scored."""
    projected = ix.store.fitted.hasher.project(embeddings)
    if shortlist is None:
        return SearchResult(*asymmetric_scan(projected, ix.store.index_codes, k, distinct))
    candidates = shortlist_rows(ix, pack_signs(projected), "asymmetric", k, shortlist, spec)
    return SearchResult(*rescore_asymmetric(projected, candidates, ix.store.index_codes, k))


def _fetch(ix: IndexDir, k: int) -> int:
    return min(len(ix), k + EXTRA_CANDIDATES)


def _ties_may_continue(ix: IndexDir, distances: np.ndarray, k: int, exact_index: bool, tolerance: float = 0.0) -> np.ndarray:
    """Rows whose k-th distance reaches the last fetched one: more equal items may lie beyond it."""
    if not exact_index or distances.shape[1] >= len(ix):
        return np.zeros(len(distances), dtype=bool)
    return distances[:, -1] - distances[:, k - 1] <= tolerance


def _rank_by_cosine(ix: IndexDir, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine of each query with its candidate rows (-1: none); the best k by (score, row)."""
    def cosines(block_queries: np.ndarray, block: np.ndarray) -> np.ndarray:
        return np.where(block >= 0, np.einsum("qd,qcd->qc", block_queries, ix.float_rows(np.maximum(block, 0))), -np.inf)

    return _best_by_score(queries, candidates, k, cosines)


def _best_by_score(queries: np.ndarray, candidates: np.ndarray, k: int, score) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) [Q, k]: each query's k candidates (int64 [Q, C], -1: none) of highest
    score(queries, candidates) (``_scored_in_blocks``), ties by row."""
    negated, ids = merge_candidates(-_scored_in_blocks(queries, candidates, score), candidates, k)
    return -negated, ids


def _scored_in_blocks(queries: np.ndarray, candidates: np.ndarray, score) -> np.ndarray:
    """float32 [Q, C]: score(queries [q, dim], candidates [q, c]) -> [q, c] over blocks of queries
    and candidates that hold GATHERED_FLOATS vector entries at most, at any shortlist size."""
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    columns = max(1, min(candidates.shape[1], GATHERED_FLOATS // queries.shape[1]))
    rows = max(1, GATHERED_FLOATS // (columns * queries.shape[1]))
    for top in range(0, len(candidates), rows):
        for left in range(0, candidates.shape[1], columns):
            scores[top : top + rows, left : left + columns] = score(queries[top : top + rows], candidates[top : top + rows, left : left + columns])
    return scores
