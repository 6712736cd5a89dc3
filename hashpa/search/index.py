"""``hashpa.open_index(path)``: an index directory opened for search, from images or embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashpa.errors import HashpaError
from hashpa.indexdir.layout import EXACT_INDEXES
from hashpa.indexdir.open import IndexDir
from hashpa.milvus import MILVUS
from hashpa.search import modes
from hashpa.search.asymmetric import DistinctCodes
from hashpa.settings import whole_number


class Index:
    """An index directory opened for search.

    ``ix.search(queries, k=10, mode="rerank")`` takes query images (anything ``Model.embed`` takes:
    PIL images, paths, uint8 arrays, tensors), embedded with the model that built the index, or
    float embeddings [Q, dim] from that model; it computes the queries' codes in the index's code
    space itself. ``ix.directory`` is the index directory it reads (``hashpa.indexdir.IndexDir``:
    its files, store and index.json).
    """

    def __init__(self, path: str | Path, nprobe: int | None = None, ef_search: int | None = None, run: str | Path | None = None,
                 device: str = "auto", engine: str = "auto", milvus: str | None = None, collection: str | None = None):
        """`run`: embed image queries with this run's model instead of the one index.json names (it must be
        the same model); nprobe / ef_search tune IVF / HNSW indexes; `engine`: what embeds image
        queries (``hashpa.engines``: torch, onnx, or auto: the run's ONNX export when it has one).
        `milvus`: the URI of a Milvus collection this directory was published to (``hashpa.milvus``;
        `collection`, default from the directory's name): searches go there unless `index` names a
        FAISS index, and the modes are float, binary and rerank."""
        from hashpa.engines import check_engine

        check_engine(engine)
        self.directory = IndexDir(path, nprobe, ef_search)
        self._run, self._device, self._engine = run, device, engine
        self._model = None
        self._distinct: DistinctCodes | None = None
        self.published = None
        if milvus is not None:
            from hashpa.milvus import MilvusCollection, default_collection

            self.published = MilvusCollection(milvus, collection or default_collection(self.path))
            try:
                self.published.check_index(self)
            except HashpaError:
                self.close()
                raise

    def reopened(self) -> "Index":
        """The index directory opened again at its newest generation, with the same settings; the
        model already loaded is kept when the index was built by the same one."""
        published = (self.published.uri, self.published.name) if self.published else (None, None)
        fresh = Index(self.path, self.directory.nprobe, self.directory.ef_search, self._run, self._device, self._engine, *published)
        if self._model is not None and self._model.fingerprint == fresh.meta.model_fingerprint:
            fresh._model = self._model
        return fresh

    def close(self) -> None:
        """Let go of the index directory's files (see IndexDir.close) and of the Milvus connection."""
        self.directory.close()
        if self.published is not None:
            self.published.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.directory)

    @property
    def path(self) -> Path:
        return self.directory.path

    @property
    def store(self):
        return self.directory.store

    @property
    def meta(self):
        return self.directory.meta

    @property
    def modes(self) -> list[str]:
        """The search modes this index supports by default: its Milvus collection's when opened with one."""
        if self.published is not None:
            from hashpa.milvus import MILVUS_MODES

            return list(MILVUS_MODES)
        return self.faiss_modes

    @property
    def faiss_modes(self) -> list[str]:
        """The search modes of the index directory's own FAISS indexes."""
        return [mode for mode in modes.MODES if modes.supports(self.store, mode)]

    def model(self):
        """The model that built the index (loaded on first use, its fingerprint checked)."""
        if self._model is None:
            from hashpa.engines import query_model
            from hashpa.indexdir.layout import model_source

            model = query_model(self._run or model_source(self.path, self.meta), self.meta.checkpoint, self._device, self._engine,
                                self.meta.model_fingerprint)
            self.directory.check_model(model.fingerprint)
            self._model = model
        return self._model

    def embed(self, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(float embeddings [Q, dim], codes [Q, bits/8] in this index's code space) of query images."""
        embeddings, codes = self.model().embed(images, batch_size)
        return embeddings, self.query_codes(embeddings, codes)

    def embed_files(self, paths: list[Path], batch_size: int = 64, workers: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, codes in this index's code space, positions in `paths` of the readable files);
        unreadable files are skipped with a warning."""
        embeddings, codes, positions = self.model().embed_files(paths, batch_size, workers)
        return embeddings, self.query_codes(embeddings, codes), positions

    def query_codes(self, embeddings: np.ndarray, model_codes: np.ndarray | None = None) -> np.ndarray:
        """The queries' codes in this index's code space: the model's codes [Q, bits/8] as they are,
        or the float embeddings [Q, dim] encoded by the quantiser fitted to the database."""
        if self.store.fitted is not None:
            return self.store.fitted.hasher.encode(embeddings)
        if model_codes is None:
            raise HashpaError(f"{self.path} holds the model's codes, which come from the images, not from float embeddings: "
                              "search with the query images, or pass codes= from model.embed")
        return model_codes

    def search(self, queries=None, k: int = 10, mode: str = "float", *, codes: np.ndarray | None = None, shortlist: int | None = None,
               index: str | None = None) -> modes.SearchResult:
        """The k nearest store rows of each query: SearchResult(scores [Q, k], ids [Q, k]).

        queries: images, or float embeddings [Q, dim] (or [dim]) from the index's model; rows whose
        length is not 1 (beyond NORM_TOLERANCE) are L2-normalised here, as the stored embeddings
        are, and NaN, infinite or zero rows are refused.
        codes: the queries' packed model codes, uint8 [Q, bits/8], when embeddings are given
        (binary and rerank modes of an index holding the model's codes need them), one row per query.
        shortlist: rerank's and rerank-codes' Hamming candidates (``modes.default_shortlist``) or, for asymmetric, the Hamming
        candidates re-scored (default: an exact scan of every code). index: which built FAISS index
        to search (default Flat / BFlat; "milvus", the default when opened with one: the published
        collection).

        Scores, best first, ties by store row: "float" and "rerank" the cosine similarity (in
        [-1, 1]); "rerank-codes" the cosine with the row's decoded compressed embedding; "binary"
        the Hamming distance (0 to bits, smaller is nearer); "asymmetric" the dot product of the
        query's real-valued projection with the stored code's +-1 bits.
        """
        if not isinstance(mode, str):
            raise HashpaError(f"mode must be one of {', '.join(modes.MODES)}, got {mode!r}")
        k = whole_number(k, "k", minimum=None)  # its type here; its range, as every search's, in check_request
        shortlist = None if shortlist is None else whole_number(shortlist, "shortlist", minimum=None)
        if index is not None and not isinstance(index, str):
            raise HashpaError(f"index must be a FAISS factory string of a built index ({', '.join(self.meta.specs('float') + self.meta.specs('binary'))}), "
                              f"got {index!r}")
        to_milvus = self.published is not None and index in (None, MILVUS)
        if to_milvus:
            self.published.check_mode(mode)
        modes.check_request(self.directory, mode, k, shortlist)
        embeddings, codes = self._queries(queries, codes, mode)
        if to_milvus:
            return self.published.search_index(self, embeddings, codes, k, mode, shortlist)
        if index == MILVUS:
            raise HashpaError(f"{self.path} was opened without a Milvus collection: open it with milvus=URI to search one")
        spec = index or EXACT_INDEXES[modes.MODE_FACTS[mode].index_kind]
        if mode == "float":
            return modes.search_float(self.directory, embeddings, k, spec)
        if mode == "binary":
            return modes.search_binary(self.directory, codes, k, spec)
        if mode == "rerank":
            return modes.search_rerank(self.directory, embeddings, codes, k, shortlist, spec)
        if mode == "rerank-codes":
            return modes.search_rerank_codes(self.directory, embeddings, codes, k, shortlist, spec)
        if shortlist is None and self._distinct is None:
            self._distinct = DistinctCodes.of(self.store.index_codes)  # the scan's, kept for the next search
        return modes.search_asymmetric(self.directory, embeddings, k, shortlist, spec, self._distinct)

    def _queries(self, queries, codes: np.ndarray | None, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(float embeddings [Q, dim], L2-normalised; codes [Q, bits/8] in the index's code space, or None when `mode` needs none)."""
        if queries is None:
            raise HashpaError("give the queries: images, or float embeddings [Q, dim] from the index's model")
        if not _are_embeddings(queries):
            return self.embed(queries)
        embeddings = normalised_queries(queries, self.meta.dim, self.path)
        if mode in ("float", "asymmetric"):
            return embeddings, None
        return embeddings, self.query_codes(embeddings, None if codes is None else checked_codes(codes, len(embeddings), self.meta.bits))


def normalised_queries(queries: np.ndarray, dim: int, where) -> np.ndarray:
    """float32 [Q, dim] query embeddings, each row of length 1; NaN, infinite and zero rows refused."""
    embeddings = np.array(np.atleast_2d(queries), dtype=np.float32)
    if embeddings.shape[1] != dim or not len(embeddings):
        raise HashpaError(f"query embeddings must be [Q, {dim}] ({where} holds {dim}-d embeddings), got shape {np.shape(queries)}")
    if not np.isfinite(embeddings).all():
        rows = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
        raise HashpaError(f"query embeddings hold NaN or infinite values (rows {', '.join(map(str, rows[:5]))})")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if (norms == 0).any():
        raise HashpaError(f"query embedding rows {', '.join(map(str, np.flatnonzero(norms[:, 0] == 0)[:5]))} are all zeros: they have no direction to search")
    off = np.abs(norms[:, 0] - 1) > NORM_TOLERANCE
    embeddings[off] /= norms[off]
    return embeddings


NORM_TOLERANCE = 1e-3  # a query row this close to length 1 is searched as it is (float16 rounding, say)


def checked_codes(codes, queries: int, bits: int) -> np.ndarray:
    """uint8 [queries, bits/8] packed codes, or a HashpaError saying how they differ."""
    array = np.atleast_2d(np.asarray(codes))
    if array.dtype != np.uint8:
        raise HashpaError(f"codes must be packed uint8 bytes [Q, {bits // 8}] (as Model.embed gives them), got {array.dtype}")
    if array.shape != (queries, bits // 8):
        raise HashpaError(f"codes must be [{queries}, {bits // 8}]: one row of {bits // 8} bytes per query, got shape {array.shape}")
    return array


def _are_embeddings(queries) -> bool:
    return isinstance(queries, np.ndarray) and np.issubdtype(queries.dtype, np.floating) and queries.ndim in (1, 2)


def open_index(path: str | Path, nprobe: int | None = None, ef_search: int | None = None, run: str | Path | None = None,
               device: str = "auto", engine: str = "auto", milvus: str | None = None, collection: str | None = None) -> Index:
    """Open the index directory `path` for search (see Index)."""
    return Index(path, nprobe, ef_search, run, device, engine, milvus, collection)
