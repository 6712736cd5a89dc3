"""Searching an index: float (cosine), binary (Hamming), rerank (Hamming shortlist, then cosine) and,
for indexes whose codes were fitted to the database, asymmetric (the query's real-valued projection
against the database's binary codes: the database stays bits/8 bytes per image, the query loses
nothing to quantisation).

Rankings are deterministic: equal scores are ordered by store row. Flat indexes return the exact
top k under that rule; approximate indexes (HNSW, IVF) return their own candidates, re-sorted by it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hashpa.codes import codes_to_signs
from hashpa.errors import HashpaError, ModelMismatchError
from hashpa.index import INDEX_JSON
from hashpa.quantizers import pack_signs
from hashpa.store import STORE_FILE, Store, read_store

log = logging.getLogger(__name__)

MODES = ("float", "binary", "rerank", "asymmetric")
ASYMMETRIC_BLOCK = 65536  # database rows unpacked at a time by the asymmetric scan
ASYMMETRIC_SCORES = 2**24  # query x database scores held at a time by the asymmetric scan
ASYMMETRIC_LOOKUP_BELOW = 8  # fewer queries than this score by byte lookup tables instead of unpacking the codes
_BYTE_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32) * 2 - 1  # [256, 8]: byte -> +-1 bits
EXTRA_CANDIDATES = 16  # fetched beyond k to see whether ties at the k-th place continue


@dataclass
class SearchResult:
    scores: np.ndarray  # [Q, k]: cosine similarity (float, rerank), Hamming distance (binary) or projection . code (asymmetric)
    ids: np.ndarray  # int64 [Q, k]: store rows


class OpenIndex:
    """An index directory: its store, its metadata and (loaded on first use) its FAISS indexes."""

    def __init__(self, path: str | Path, nprobe: int | None = None, ef_search: int | None = None):
        """nprobe (IVF lists visited) and ef_search (HNSW beam width) tune approximate indexes."""
        self.path = Path(path)
        self.nprobe, self.ef_search = nprobe, ef_search
        self._loaded: dict[tuple[str, str], object] = {}
        meta_path = self.path / INDEX_JSON
        if not meta_path.is_file():
            raise HashpaError(f"{self.path} is not a hashpa index (no {INDEX_JSON}); build it with hashpa index FOLDER --model RUN --out {self.path}")
        self.meta = json.loads(meta_path.read_text())
        self.store: Store = read_store(self.path / STORE_FILE, map_embeddings=True)  # rerank reads only its shortlists' rows
        if self.store.attrs.get("store_id") != self.meta.get("store_id"):
            raise HashpaError(f"{self.path}: the store and {INDEX_JSON} do not match (an interrupted hashpa index?); run hashpa index again")

    def float_rows(self, rows) -> np.ndarray:
        """float32 [len(rows), dim]: the stored embeddings of `rows` (any index numpy takes)."""
        return np.asarray(self.store.embeddings[rows], dtype=np.float32)

    @property
    def fingerprint(self) -> str:
        return self.meta["model_fingerprint"]

    def specs(self, kind: str) -> list[str]:
        return [b["spec"] for b in self.meta["indexes"].values() if b["kind"] == kind]

    def faiss_index(self, kind: str, spec: str):
        if (kind, spec) not in self._loaded:
            self._loaded[kind, spec] = self._read_faiss(kind, spec)
        return self._loaded[kind, spec]

    def _read_faiss(self, kind: str, spec: str):
        import faiss

        entry = self.meta["indexes"].get(f"{kind}:{spec}")
        if entry is None:
            built = ", ".join(self.specs(kind)) or "none"
            raise HashpaError(f"{self.path} has no {kind} index {spec!r} (built: {built}); add it with hashpa index ... --{kind}-index {spec}")
        reader = faiss.read_index_binary if kind == "binary" else faiss.read_index
        index = reader(str(self.path / entry["file"]))
        if self.nprobe and hasattr(index, "nprobe"):
            index.nprobe = self.nprobe
        if self.ef_search and hasattr(index, "hnsw"):
            index.hnsw.efSearch = self.ef_search
        if index.ntotal != len(self.store):
            raise HashpaError(f"{self.path / entry['file']} holds {index.ntotal} vectors, the store {len(self.store)}: run hashpa index again")
        return index

    def query_codes(self, embeddings: np.ndarray, model_codes: np.ndarray) -> np.ndarray:
        """The queries' codes in this index's code space: the model's codes [Q, bits/8] as they are,
        or the float embeddings [Q, dim] encoded by the quantiser fitted to the database."""
        return self.store.fitted.hasher.encode(embeddings) if self.store.fitted else model_codes

    def check_model(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            raise ModelMismatchError(
                f"the queries were embedded by model {fingerprint}, but {self.path} was built with model {self.fingerprint}: "
                "use the model the index was built with (see index.json), or rebuild the index with this one"
            )

    # ---- search ----------------------------------------------------------------------------

    def search(self, embeddings: np.ndarray, codes: np.ndarray, k: int, mode: str = "float",
               spec: str | None = None, shortlist: int | None = None) -> SearchResult:
        """k nearest store rows of each query. embeddings float32 [Q, dim], codes uint8 [Q, bits/8]."""
        if mode not in MODES:
            raise HashpaError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        if not 1 <= k <= len(self.store):
            raise HashpaError(f"-k must be between 1 and the index size {len(self.store)}, got {k}")
        if shortlist is not None and shortlist < 1:
            raise HashpaError(f"--shortlist must be at least 1 (it is raised to -k when smaller), got {shortlist}")
        if mode == "float":
            return self.search_float(embeddings, k, spec or "Flat")
        if mode == "binary":
            return self.search_binary(codes, k, spec or "BFlat")
        if mode == "asymmetric":
            return self.search_asymmetric(embeddings, k, shortlist, spec or "BFlat")
        return self.search_rerank(embeddings, codes, k, shortlist or 10 * k, spec or "BFlat")

    def search_float(self, embeddings: np.ndarray, k: int, spec: str = "Flat") -> SearchResult:
        queries = np.ascontiguousarray(embeddings, dtype=np.float32)
        similarities, candidates = self.faiss_index("float", spec).search(queries, self._fetch(k))
        tied = self._ties_may_continue(-similarities, k, spec == "Flat", tolerance=1e-6)
        scores = np.empty((len(queries), k), np.float32)
        ids = np.empty((len(queries), k), np.int64)
        scores[~tied], ids[~tied] = self._rank_by_cosine(queries[~tied], candidates[~tied], k)
        if tied.any():  # rare: equal scores may continue past the fetched candidates
            everything = np.broadcast_to(np.arange(len(self.store)), (int(tied.sum()), len(self.store)))
            scores[tied], ids[tied] = self._rank_by_cosine(queries[tied], everything, k)
        return SearchResult(scores, ids)

    def search_binary(self, codes: np.ndarray, k: int, spec: str = "BFlat") -> SearchResult:
        queries = np.ascontiguousarray(codes, dtype=np.uint8)
        index = self.faiss_index("binary", spec)
        distances, candidates = index.search(queries, self._fetch(k))
        tied = self._ties_may_continue(distances, k, spec == "BFlat")
        out_distances = np.empty((len(queries), k), np.int32)
        ids = np.empty((len(queries), k), np.int64)
        out_distances[~tied], ids[~tied] = _sort_by_score_then_id(distances[~tied], candidates[~tied], k)
        for radius in np.unique(distances[tied, k - 1]):  # common at 16-64 bits: fetch every item at the k-th distance
            rows = np.flatnonzero(tied & (distances[:, k - 1] == radius))
            limits, found_distances, found_ids = index.range_search(queries[rows], int(radius) + 1)  # distance < radius + 1
            out_distances[rows], ids[rows] = _first_k_of_segments(limits, found_distances, found_ids, k)
        return SearchResult(out_distances, ids)

    def search_rerank(self, embeddings: np.ndarray, codes: np.ndarray, k: int, shortlist: int, spec: str = "BFlat") -> SearchResult:
        """Hamming shortlist of `shortlist` rows from the binary index, re-ranked by exact cosine."""
        shortlist = min(max(shortlist, k), len(self.store))
        candidates = self.search_binary(codes, shortlist, spec).ids
        scores, ids = self._rank_by_cosine(np.ascontiguousarray(embeddings, dtype=np.float32), candidates, k)
        return SearchResult(scores, ids)

    def search_asymmetric(self, embeddings: np.ndarray, k: int, shortlist: int | None = None, spec: str = "BFlat") -> SearchResult:
        """score = ((e - mean) @ projection) . b over the database's +-1 codes b (quantiser and codes
        fitted by ``hashpa index --codes itq``); the k best by (score descending, row). Without
        `shortlist` an exact scan of every code; with it, the `shortlist` nearest codes by Hamming
        distance from the binary index `spec` (the query's own code), re-scored."""
        if self.store.fitted is None:
            raise HashpaError(f"asymmetric search needs codes fitted to the database: rebuild {self.path} with hashpa index ... --codes itq")
        projected = self.store.fitted.hasher.project(embeddings)
        if shortlist is None:
            return asymmetric_scan(projected, self.store.index_codes, k)
        candidates = self.search_binary(pack_signs(projected), min(max(shortlist, k), len(self.store)), spec).ids
        return rescore_asymmetric(projected, candidates, self.store.index_codes, k)

    def _fetch(self, k: int) -> int:
        return min(len(self.store), k + EXTRA_CANDIDATES)

    def _ties_may_continue(self, distances: np.ndarray, k: int, exact_index: bool, tolerance: float = 0.0) -> np.ndarray:
        """Rows whose k-th distance reaches the last fetched one: more equal items may lie beyond it."""
        if not exact_index or distances.shape[1] >= len(self.store):
            return np.zeros(len(distances), dtype=bool)
        return distances[:, -1] - distances[:, k - 1] <= tolerance

    def _rank_by_cosine(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine of each query with its candidate rows (-1: none); the best k by (score, row)."""
        scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
        for start in range(0, candidates.shape[1], 4096):
            block = candidates[:, start : start + 4096]
            vectors = self.float_rows(np.maximum(block, 0))
            scores[:, start : start + 4096] = np.where(block >= 0, np.einsum("qd,qcd->qc", queries, vectors), -np.inf)
        negated, ids = _sort_by_score_then_id(-scores, candidates, k)
        return -negated, ids


def asymmetric_scan(projected: np.ndarray, codes: np.ndarray, k: int) -> SearchResult:
    """Exact asymmetric top k: float32 queries [Q, bits] (a quantiser's real-valued projections)
    against packed codes uint8 [N, bits/8] read as +-1; score = projection . code, the k best by
    (score descending, row). Memory: one block of ASYMMETRIC_BLOCK unpacked codes and about
    ASYMMETRIC_SCORES scores at a time. A few queries (a single search) look each code byte's partial
    score up in a 256-entry table per query and byte instead of unpacking every code. Either way a
    score depends only on the query and the code, never on the code's row, so equal codes tie
    exactly and are ordered by row."""
    from hashpa.eval.knn import top_k

    query_rows = max(1, ASYMMETRIC_SCORES // min(len(codes), ASYMMETRIC_BLOCK))
    chunks = [slice(start, start + query_rows) for start in range(0, len(projected), query_rows)]
    best = [(np.empty((len(projected[rows]), 0), np.float32), np.empty((len(projected[rows]), 0), np.int64)) for rows in chunks]
    by_lookup = len(projected) < ASYMMETRIC_LOOKUP_BELOW
    tables = _byte_tables(projected) if by_lookup else None
    for start in range(0, len(codes), ASYMMETRIC_BLOCK):
        block = codes[start : start + ASYMMETRIC_BLOCK]
        signs = None if by_lookup else codes_to_signs(block).T.astype(np.float64)  # each block unpacked once
        for i, rows in enumerate(chunks):
            negated = -(_looked_up(tables[rows], block) if by_lookup else _exact_products(projected[rows], signs))
            local = top_k(negated, k)
            best[i] = _sort_by_score_then_id(np.concatenate([best[i][0], np.take_along_axis(negated, local, axis=1)], axis=1),
                                             np.concatenate([best[i][1], local + start], axis=1), k)
    scores, ids = zip(*best)
    return SearchResult(-np.concatenate(scores), np.concatenate(ids))


def rescore_asymmetric(projected: np.ndarray, candidates: np.ndarray, codes: np.ndarray, k: int) -> SearchResult:
    """The k best of each query's candidate rows (int64 [Q, C], -1: none) by asymmetric score, the
    projection float32 [Q, bits] . the candidate's +-1 code from packed `codes` uint8 [N, bits/8];
    ties by row. Scores add the code bytes' entries of per-query lookup tables in a fixed order, so
    equal codes tie exactly."""
    scores = _looked_up(_byte_tables(projected), codes[np.maximum(candidates, 0)])
    scores[candidates < 0] = -np.inf
    negated, ids = _sort_by_score_then_id(-scores, candidates, min(k, candidates.shape[1]))
    return SearchResult(-negated, ids)


def _exact_products(projected: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """float32 [Q, N] = projected [Q, bits] @ signs float64 [bits, N] of +-1, the same for equal columns.

    A BLAS product may round equal columns differently (its kernels treat a block's edges apart), which
    would order equal codes by chance. Here each query is scaled by a power of two and rounded so that
    every partial sum is an integer below 2**53: float64 adds those exactly in any order. The rounding
    costs about 2**-44 of the query's largest entry, far below float32's own precision.
    """
    largest = np.abs(projected).max(axis=1, initial=0.0).astype(np.float64) * signs.shape[0]
    scale = np.exp2(52 - np.ceil(np.log2(np.maximum(largest, np.finfo(np.float64).tiny))))[:, None]
    return (np.rint(projected * scale) @ signs).astype(np.float32) * (1 / scale).astype(np.float32)  # powers of two: exact


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


def _sort_by_score_then_id(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k entries with the smallest (score, id); missing ids (-1) go last."""
    missing = ids < 0
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, ids), np.where(missing, np.inf, scores)), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _first_k_of_segments(limits: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS range-search results (row r owns entries limits[r]:limits[r+1], at least k of them):
    each row's k entries with the smallest (score, id), as arrays [rows, k]."""
    limits = limits.astype(np.int64)
    owner = np.repeat(np.arange(len(limits) - 1), np.diff(limits))
    order = np.lexsort((ids, scores, owner))
    keep = order[np.arange(len(order)) - limits[owner] < k]  # sorting kept every row's entries in its own span
    return scores[keep].reshape(-1, k), ids[keep].reshape(-1, k)


@dataclass
class Hit:
    rank: int
    row: int
    path: str
    score: float  # cosine similarity, or Hamming distance in binary mode
    label: str | None


@dataclass
class QueryResult:
    query: str
    code: str  # the query's code as a bit string
    hits: list[Hit]


def expand_queries(queries: Sequence[str | Path]) -> list[Path]:
    """Image files, and the images inside folders, in the order given."""
    from hashpa.data.folder import find_images, is_image

    paths: list[Path] = []
    for query in map(Path, queries):
        if query.is_dir():
            paths += [query / p for p in find_images(query)]
        elif query.is_file() and is_image(query):
            paths.append(query)
        else:
            raise HashpaError(f"query {query} is neither an image file nor a folder")
    if not paths:
        raise HashpaError("no query images given")
    return paths


def embed_queries(opened: OpenIndex, paths: Sequence[Path], model: str | Path | None = None, device: str = "auto",
                  batch_size: int = 64, workers: int = 0, labels: Sequence[int] | None = None):
    """Embed query images with the index's model (or `model`, which must be the same one).

    Returns (embeddings float32 [n, dim], codes uint8 [n, bits/8] in the index's code space,
    positions [n] of the readable paths). Unreadable queries are skipped with a warning.
    """
    from hashpa.data.folder import Sample
    from hashpa.inference import embed_all, resolve_device
    from hashpa.train.rundir import load_trained_model

    torch_device = resolve_device(device)
    source = model or opened.meta["model"]
    net, _ = load_trained_model(source, opened.meta.get("checkpoint", "best"), torch_device)
    opened.check_model(net.fingerprint())
    samples = [Sample(Path(p), -1 if labels is None else labels[i]) for i, p in enumerate(paths)]
    embeddings, codes, positions, skipped = embed_all(net, samples, torch_device, batch_size=batch_size, workers=workers)
    return embeddings, opened.query_codes(embeddings, codes), positions


def search(index_dir: str | Path, queries: Sequence[str | Path], k: int = 10, mode: str = "float",
           shortlist: int | None = None, index_spec: str | None = None, model: str | Path | None = None,
           device: str = "auto", nprobe: int | None = None, ef_search: int | None = None) -> list[QueryResult]:
    """Search `index_dir` with query images (files or folders): ranked store rows per query."""
    from hashpa.codes import code_strings

    opened = OpenIndex(index_dir, nprobe, ef_search)
    paths = expand_queries(queries)
    embeddings, codes, positions = embed_queries(opened, paths, model, device)
    result = opened.search(embeddings, codes, k, mode, index_spec, shortlist)
    store = opened.store
    out = []
    for q, (position, code) in enumerate(zip(positions, code_strings(codes))):
        hits = [
            Hit(rank + 1, int(row), store.paths[row], float(score),
                store.class_names[store.labels[row]] if store.labels[row] >= 0 else None)
            for rank, (row, score) in enumerate(zip(result.ids[q], result.scores[q]))
        ]
        out.append(QueryResult(str(paths[position]), code, hits))
    return out
