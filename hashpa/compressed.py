"""Compressed float embeddings for re-ranking a Hamming shortlist (``hashpa index --rerank-codes``):
the database's embeddings encoded by a FAISS quantiser named by its factory string (``PQ16``,
``SQ8``, ``SQfp16``, ``PCA128,SQ8`` ...), fitted to them without labels, and the asymmetric scores
of float queries against those codes.

A candidate's score is the cosine of the query with the candidate's decoded vector, q . r / |r|:
the quantiser shortens the vectors by varying amounts (PCA drops a share of each one, PQ snaps it
to centroids), and dividing by |r| ranks by direction as the float embeddings' cosine does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from hashpa.errors import HashpaError

log = logging.getLogger(__name__)

SPEC_ALIASES = {"float16": "SQfp16", "bfloat16": "SQbf16", "int8": "SQ8"}  # names users reach for, as FAISS spells them
FIT_SAMPLE = 100_000  # embeddings the quantiser is trained on, at most


@dataclass
class CompressedVectors:
    """The database's embeddings as codes of one FAISS quantiser (its stand-alone codec:
    ``sa_encode`` / ``sa_decode``)."""

    spec: str  # the factory string, as given
    codec: np.ndarray  # uint8: ``faiss.serialize_index`` of the trained quantiser, no vectors added
    codes: np.ndarray  # uint8 [N, code_size]

    def __post_init__(self):
        self._quantiser = None
        self._split = None

    @property
    def quantiser(self):
        if self._quantiser is None:
            import faiss

            self._quantiser = faiss.deserialize_index(np.ascontiguousarray(self.codec, dtype=np.uint8))
        return self._quantiser

    @property
    def code_size(self) -> int:
        return int(self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        """What searching keeps: every code and the codec."""
        return int(self.codes.nbytes + self.codec.nbytes)

    def problem(self, rows: int, dim: int) -> str | None:
        """What in these compressed vectors, read from a store of `rows` `dim`-d embeddings, is not as
        fit_compressed writes them, or None."""
        if self.codes.ndim != 2 or len(self.codes) != rows or self.codes.dtype != np.uint8 or self.codec.ndim != 1:
            return f"its rerank codes are {self.codes.dtype} {self.codes.shape}, not uint8 [{rows}, code size]"
        try:
            quantiser = self.quantiser
            code_size = quantiser.sa_code_size()
        except RuntimeError as error:
            return f"its rerank quantiser cannot be read ({_faiss_reason(error)})"
        if quantiser.d != dim or code_size != self.code_size or not quantiser.is_trained:
            return f"its rerank quantiser ({quantiser.d}-d, {code_size}-byte codes) does not fit its {dim}-d embeddings and {self.code_size}-byte codes"
        return None

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), dim]: the decoded vectors of store `rows`."""
        return self.quantiser.sa_decode(np.ascontiguousarray(self.codes[rows]))

    def scores(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """float32 [Q, C]: the cosine of each query (float32 [Q, dim], unit length) with the decoded
        vector of each of its candidate rows (int64 [Q, C]; -1, none: -inf). Works on Q * C codes at
        once: callers bound the block (``hashpa.search.modes``)."""
        rotations, inner, tables = self._scoring()
        for rotation in rotations:  # an orthonormal map keeps dot products and norms: rotate Q queries, not Q * C decoded vectors
            queries = rotation.apply(np.ascontiguousarray(queries, dtype=np.float32))
        codes = self.codes[np.maximum(candidates, 0)]  # [Q, C, code_size]
        if tables is not None:
            dots, squared = _product_dots(np.asarray(queries, np.float32), codes, *tables)
            norms = np.sqrt(squared)
        else:
            decoded = inner.sa_decode(np.ascontiguousarray(codes.reshape(-1, self.code_size))).reshape(*candidates.shape, -1)
            norms = np.linalg.norm(decoded, axis=2)
            dots = np.einsum("qd,qcd->qc", queries, decoded)
        return np.where((candidates >= 0) & (norms > 0), dots / np.maximum(norms, 1e-30), -np.inf).astype(np.float32)

    def _scoring(self):
        """(the orthonormal transforms the quantiser starts with, such as OPQ's rotation; the codec
        that decodes what they output; for an 8-bit product quantiser, its centroids float32
        [M, 256, dim/M] and their squared norms [M, 256], else None)."""
        if self._split is None:
            import faiss

            quantiser, rotations = faiss.downcast_index(self.quantiser), []
            if isinstance(quantiser, faiss.IndexPreTransform):
                chain = [faiss.downcast_VectorTransform(quantiser.chain.at(i)) for i in range(quantiser.chain.size())]
                if all(isinstance(t, faiss.LinearTransform) and t.is_orthonormal and not t.have_bias and t.d_in == t.d_out for t in chain):
                    quantiser, rotations = faiss.downcast_index(quantiser.index), chain
            tables = None
            if type(quantiser) is faiss.IndexPQ and quantiser.pq.nbits == 8:
                pq = quantiser.pq
                centroids = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
                tables = (centroids, np.einsum("mkd,mkd->mk", centroids, centroids))
            self._split = (rotations, quantiser, tables)
        return self._split


def _product_dots(queries: np.ndarray, codes: np.ndarray, centroids: np.ndarray, squared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q . y, |y|^2) float32 [Q, C] of queries float32 [Q, dim] with the vectors y that product
    quantiser codes uint8 [Q, C, M] decode to, by table lookup: the query's dot product with every
    centroid ([Q, M, 256]) and each centroid's squared norm, summed over the M sub-vectors."""
    q, c, m = codes.shape
    ksub = centroids.shape[1]
    table = np.einsum("qmd,mkd->qmk", queries.reshape(q, m, -1), centroids).reshape(q, m * ksub)
    entries = (codes.astype(np.intp) + np.arange(m) * ksub).reshape(q, c * m)
    dots = np.take_along_axis(table, entries, axis=1).reshape(q, c, m).sum(axis=2)
    return dots, squared.ravel()[entries].reshape(q, c, m).sum(axis=2)


def factory_string(spec: str) -> str:
    """The FAISS factory string of a --rerank-codes spec (SPEC_ALIASES resolved)."""
    return SPEC_ALIASES.get(spec, spec)


def check_spec_text(spec: object) -> None:
    """A HashpaError unless `spec` is a non-empty string (what can be checked before the dimension is known)."""
    if not isinstance(spec, str) or not spec.strip():
        raise HashpaError(f"--rerank-codes takes a FAISS factory string (PQ16, SQ8, float16, PCA128,SQ8 ...), got {spec!r}")


def check_rerank_spec(spec: object, dim: int):
    """The untrained FAISS quantiser `spec` names for `dim`-d embeddings, or a HashpaError saying why
    it cannot compress them."""
    import faiss

    check_spec_text(spec)
    try:
        quantiser = faiss.index_factory(dim, factory_string(spec), faiss.METRIC_L2)  # a codec's codes do not depend on the metric
    except RuntimeError as error:
        raise HashpaError(f"--rerank-codes {spec!r} is not a FAISS quantiser of {dim}-d vectors ({_faiss_reason(error)}); "
                          f"e.g. PQ{_divisor(dim, 16)}, SQ8, float16 or PCA{dim // 4},SQ8") from None
    wrapper = isinstance(faiss.downcast_index(quantiser), (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexRefine))
    try:
        code_size = quantiser.sa_code_size()
    except RuntimeError:
        wrapper = True
    if wrapper:
        raise HashpaError(f"--rerank-codes {spec!r} builds a search structure, not a code of each vector: "
                          "give a quantiser (PQm, SQ8, SQfp16, PCAd,SQ8, OPQm,PQm, RQ..., LSQ...)") from None
    if code_size >= 4 * dim:
        raise HashpaError(f"--rerank-codes {spec!r} keeps {code_size} bytes a vector, no fewer than the {4 * dim} of the float32 "
                          "embeddings: --mode rerank re-ranks by those exactly; give a smaller quantiser (PQm, SQ8, float16 ...)")
    return quantiser


def fit_compressed(embeddings: np.ndarray, spec: str, seed: int = 0) -> CompressedVectors:
    """The quantiser `spec` trained on `embeddings` float [N, dim] (at most FIT_SAMPLE rows, drawn
    with `seed`) and the codes of every row."""
    import faiss

    n, dim = embeddings.shape
    quantiser = check_rerank_spec(spec, dim)
    sample = np.sort(np.random.default_rng(seed).choice(n, FIT_SAMPLE, replace=False)) if n > FIT_SAMPLE else slice(None)
    started = time.perf_counter()
    log.info("fitting %s rerank codes to %d embeddings (OPQ and the larger quantisers take minutes)", spec, min(n, FIT_SAMPLE))
    try:
        quantiser.train(np.ascontiguousarray(embeddings[sample], dtype=np.float32))
    except RuntimeError as error:
        raise HashpaError(f"--rerank-codes {spec}: FAISS cannot train it on the folder's {n} embeddings ({_faiss_reason(error)}); "
                          "index more images, or choose a smaller quantiser (fewer centroids: PQm of 4-bit codes, PQmx4; or SQ8, float16)") from None
    try:
        codes = np.concatenate([quantiser.sa_encode(np.ascontiguousarray(embeddings[start : start + 65536], dtype=np.float32))
                                for start in range(0, n, 65536)]) if n else np.empty((0, quantiser.sa_code_size()), np.uint8)
    except RuntimeError as error:
        raise HashpaError(f"--rerank-codes {spec}: FAISS cannot encode the embeddings with it ({_faiss_reason(error)}); "
                          "choose another quantiser (PQm, SQ8, float16 ...): the embedded images are kept for the next run") from None
    log.info("fitted %s rerank codes (%d bytes a row) to %d embeddings in %.1f s", spec, quantiser.sa_code_size(), min(n, FIT_SAMPLE),
             time.perf_counter() - started)
    return CompressedVectors(spec, faiss.serialize_index(quantiser), codes)


def _faiss_reason(error: RuntimeError) -> str:
    """The message of a FAISS exception without its C++ location."""
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error in") else text


def _divisor(dim: int, wanted: int) -> int:
    return next(m for m in range(min(wanted, dim), 0, -1) if dim % m == 0)
