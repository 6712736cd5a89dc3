"""The quality-per-byte frontier of ``hashpa compare --frontier``: other representations of the same
float embeddings, built in memory from the index's store, beside the index's own methods.

    float16      FAISS SQfp16, inner product: half the bytes of float32
    PCA-d        floats reduced to d = dim/4 and dim/2 dimensions by PCA (L2, which ranks
                 L2-normalised vectors as cosine does)
    PQm          FAISS product quantisation, m bytes per image (8 bits per sub-quantiser), searched
                 with asymmetric distances (the float query against the codes); FAISS's "PQmnp",
                 without the slow polysemous training that only its Hamming pre-filter uses
    RaBitQ       FAISS RaBitQ: one bit per dimension plus per-vector correction factors,
                 asymmetric distances
    PCA-ITQ b    binary codes of b bits fitted to the database (Hamming, FAISS BFlat)
    PCA-ITQ s -> l   multi-length codes: an l-bit code whose first s bits are the s-bit PCA-ITQ code
                 (``quantizers.fit_nested_itq``); the s-bit prefixes give a Hamming shortlist of
                 10 k (FAISS BFlat), re-ranked by the l-bit Hamming distance

Every quantiser is fitted to the database's own embeddings without labels, as ``hashpa index
--codes itq`` fits its codes. Bytes per image are each image's code (FAISS's ``sa_code_size``:
what a million more images cost); the index bytes are everything FAISS serialises, codebooks and
matrices included, which dominate for small databases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from hashpa.metrics.ranking import merge_candidates
from hashpa.quantizers import enough_rows, fit_itq, fit_nested_itq
from hashpa.search.modes import SHORTLIST_PER_K  # the long code re-ranks as many candidates as rerank does

PQ_BYTES = (8, 16, 32)
ITQ_BITS = (32, 64, 128, 256)
NESTED_BITS = ((64, 256),)  # (short, long) multi-length codes
PQ_TRAINING_ROWS = 256  # k-means of a sub-quantiser needs at least its 256 centroids' worth of rows


@dataclass
class FrontierMethod:
    name: str
    search: Callable[[np.ndarray, int], np.ndarray]  # float32 queries [Q, dim], k -> ids int64 [Q, k], ties by row
    code_bytes: float  # per image
    index_bytes: int  # in all: codes, codebooks, matrices


def frontier_methods(embeddings: np.ndarray, pq_bytes=PQ_BYTES, itq_bits=ITQ_BITS, nested_bits=NESTED_BITS, seed: int = 0) -> list[FrontierMethod]:
    """The frontier's methods over `embeddings` float [N, dim] (L2-normalised): those the dimension
    and the number of rows allow."""
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = x.shape
    specs = [("float16", "SQfp16", faiss.METRIC_INNER_PRODUCT)]
    specs += [(f"PCA-{d} floats", f"PCA{d},Flat", faiss.METRIC_L2) for d in (dim // 4, dim // 2) if d >= 8 and n > d]
    specs += [(f"PQ{m}", f"PQ{m}np", faiss.METRIC_L2) for m in pq_bytes if dim % m == 0 and n >= PQ_TRAINING_ROWS]
    specs += [("RaBitQ", "RaBitQ", faiss.METRIC_L2)] if hasattr(faiss, "IndexRaBitQ") else []
    methods = [float_method(name, faiss.index_factory(dim, spec, metric), x) for name, spec, metric in specs]
    for bits in itq_bits:
        if bits <= dim and enough_rows(n, bits):
            methods.append(_itq_method(x, bits, seed))
    for short, long in nested_bits:
        if long <= dim and enough_rows(n, long):
            methods.append(_nested_method(x, short, long, seed))
    return methods


def float_method(name: str, index, x: np.ndarray) -> FrontierMethod:
    """The FAISS float `index` (untrained or trained, empty) trained on and filled with `x` float32
    [N, dim], searched as FAISS searches it; ties by row."""
    import faiss

    if not index.is_trained:  # FAISS's k-means and PCA are seeded by FAISS itself: the same data gives the same quantiser
        index.train(x)
    index.add(x)
    higher_is_better = index.metric_type == faiss.METRIC_INNER_PRODUCT

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return merge_candidates(-scores if higher_is_better else scores, ids, k)[1]

    return FrontierMethod(name, search, float(index.sa_code_size()), int(faiss.serialize_index(index).nbytes))


def _itq_method(x: np.ndarray, bits: int, seed: int) -> FrontierMethod:
    import faiss

    hasher = fit_itq(x, bits, seed=seed)
    index = faiss.IndexBinaryFlat(bits)
    index.add(hasher.encode(x))

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        return index.search(hasher.encode(queries), k)[1]  # BFlat keeps (distance, row) order

    quantiser = hasher.mean.nbytes + hasher.projection.nbytes
    return FrontierMethod(f"PCA-ITQ {bits} bits", search, bits / 8, int(faiss.serialize_index_binary(index).nbytes + quantiser))


def _nested_method(x: np.ndarray, short: int, long: int, seed: int) -> FrontierMethod:
    import faiss

    hasher = fit_nested_itq(x, short, long, seed=seed)
    codes = hasher.encode(x)
    prefixes = faiss.IndexBinaryFlat(short)
    prefixes.add(np.ascontiguousarray(codes[:, : short // 8]))

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        query_codes = hasher.encode(queries)
        shortlist = min(len(codes), SHORTLIST_PER_K * k)
        _, candidates = prefixes.search(np.ascontiguousarray(query_codes[:, : short // 8]), shortlist)
        ids = np.empty((len(queries), min(k, shortlist)), np.int64)
        for start in range(0, len(queries), 256):  # [256, shortlist, long/8] bytes at a time
            block = candidates[start : start + 256]
            distances = np.bitwise_count(query_codes[start : start + 256, None, :] ^ codes[block]).sum(axis=2, dtype=np.int32)
            ids[start : start + 256] = merge_candidates(distances, block, k)[1]
        return ids

    quantiser = hasher.mean.nbytes + hasher.projection.nbytes
    return FrontierMethod(f"PCA-ITQ {short} -> {long} bits ({short}-bit shortlist of {SHORTLIST_PER_K} k)", search, long / 8,
                          int(codes.nbytes + faiss.serialize_index_binary(prefixes).nbytes + quantiser))
