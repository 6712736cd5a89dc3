"""hashpa compare --frontier: each representation searched as FAISS (or PCA-ITQ) itself searches it,
judged like the index's own methods."""

import json

import faiss
import numpy as np
import pytest

from hashpa.indexdir import Store, write_index_dir
from hashpa.quantizers import fit_itq, fit_nested_itq
from hashpa.report.comparison import compare
from hashpa.report.frontier import frontier_methods


def clustered(n: int = 600, dim: int = 32, classes: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = rng.integers(classes, size=n)
    x = (centres[labels] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels.astype(np.int32)


@pytest.fixture(scope="module")
def methods():
    x, _ = clustered()
    return x, {m.name: m for m in frontier_methods(x)}


def test_the_methods_the_dimension_allows(methods):
    _, found = methods
    assert list(found) == ["float16", "PCA-8 floats", "PCA-16 floats", "PQ8", "PQ16", "PQ32", "RaBitQ", "PCA-ITQ 32 bits"]
    assert {name: m.code_bytes for name, m in found.items()} == {"float16": 64, "PCA-8 floats": 32, "PCA-16 floats": 64, "PQ8": 8, "PQ16": 16,
                                                                   "PQ32": 32, "RaBitQ": 12, "PCA-ITQ 32 bits": 4}


@pytest.mark.parametrize("spec", ["PQ8", "PQ16", "RaBitQ"])
def test_quantised_rows_are_faiss_own_search(methods, spec):
    x, found = methods
    index = faiss.index_factory(x.shape[1], spec + "np" if spec.startswith("PQ") else spec, faiss.METRIC_L2)
    index.train(x)
    index.add(x)
    distances, ids = index.search(x[:50], 10)
    ours = found[spec].search(x[:50], 10)
    distinct = np.all(np.diff(distances, axis=1) > 0, axis=1)  # where FAISS's order has no ties, it is ours exactly
    assert distinct.mean() > 0.5 and np.array_equal(ours[distinct], ids[distinct])
    assert all(set(a) == set(b) for a, b in zip(ours, ids))


def test_pca_itq_rows_are_hamming_ranks_with_ties_by_row(methods):
    x, found = methods
    hasher = fit_itq(x, 32)
    codes = hasher.encode(x)
    distances = np.unpackbits(codes[:20, None, :] ^ codes[None, :, :], axis=2).sum(axis=2)
    expected = np.lexsort((np.broadcast_to(np.arange(len(x)), distances.shape), distances), axis=1)[:, :10]
    np.testing.assert_array_equal(found["PCA-ITQ 32 bits"].search(x[:20], 10), expected)


def test_multi_length_codes_shortlist_by_their_prefix_and_rerank_by_the_whole_code():
    x, _ = clustered()
    (nested,) = [m for m in frontier_methods(x, pq_bytes=(), itq_bits=(), nested_bits=((16, 32),)) if "->" in m.name]
    assert nested.name == "PCA-ITQ 16 -> 32 bits (16-bit shortlist of 10 k)" and nested.code_bytes == 4
    codes = fit_nested_itq(x, 16, 32).encode(x)
    rows = np.broadcast_to(np.arange(len(x)), (20, len(x)))

    def hamming_order(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        distances = np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(axis=2)
        return np.lexsort((rows, distances), axis=1), distances

    shortlist, _ = hamming_order(codes[:20, :2], codes[:, :2])
    shortlist = shortlist[:, :50]  # 10 k candidates by the 16-bit prefix, ties by row
    _, full = hamming_order(codes[:20], codes)
    chosen = np.take_along_axis(full, shortlist, axis=1)
    expected = np.take_along_axis(shortlist, np.lexsort((shortlist, chosen), axis=1), axis=1)[:, :5]
    np.testing.assert_array_equal(nested.search(x[:20], 5), expected)


def test_compare_reports_the_frontier_beside_the_index(tmp_path):
    x, labels = clustered()
    store = Store(paths=[f"c{label:02d}/{i:04d}.png" for i, label in enumerate(labels)], labels=labels, class_names=[f"c{i:02d}" for i in range(12)],
                  embeddings=x, codes=np.packbits(x[:, :16] > 0, axis=1), sizes=np.zeros(len(x), np.int64), mtimes=np.zeros(len(x), np.int64),
                  attrs={"model_fingerprint": "synthetic"})
    write_index_dir(tmp_path / "idx", store)
    report = compare(tmp_path / "idx", frontier=True, repeats=1, latency_queries=5, out=tmp_path)
    rows = {row["method"]: row for row in report["methods"]}
    assert rows["float16"]["mode"] == "frontier" and rows["float Flat"]["mode"] == "float"
    assert abs(rows["float16"]["recall@1"] - rows["float Flat"]["recall@1"]) <= 0.01  # half the bytes, the same neighbours
    assert rows["PQ8"]["bytes_per_image"] == 8 and rows["PQ8"]["index_bytes"] > 8 * len(x)  # its codebooks are counted in all
    assert rows["PCA-ITQ 32 bits"]["recall@1"] > rows["binary BFlat"]["recall@1"] - 0.2
    assert "Frontier rows" in (tmp_path / "compare.md").read_text() and json.loads((tmp_path / "compare.json").read_text())["methods"][-1]["mode"] == "frontier"
