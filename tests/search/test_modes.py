"""The search modes against brute force, on index directories written from random data."""

import faiss
import h5py
import numpy as np
import pytest

from hashpa.errors import HashpaError, ModelMismatchError
from hashpa.indexdir import IndexDir, Store, read_store, write_index_dir
from hashpa.search import modes
from tests.conftest import index_file


def random_store(n=300, dim=16, bits=16, seed=0, duplicates=True) -> Store:
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((n, dim)).astype(np.float32)
    if duplicates:
        embeddings[10:20] = embeddings[5]  # exact float ties
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    return Store(
        paths=[f"c{i % 3}/img_{i:04d}.png" for i in range(n)], labels=(np.arange(n) % 3).astype(np.int32),
        class_names=["c0", "c1", "c2"], embeddings=embeddings, codes=codes,
        sizes=np.zeros(n, np.int64), mtimes=np.zeros(n, np.int64), attrs={"model_fingerprint": "f" * 16},
    )


@pytest.fixture
def index_dir(tmp_path):
    store = random_store()
    write_index_dir(tmp_path, store, ("Flat", "HNSW32"), ("BFlat", "BHNSW32", "BIVF4"))
    return tmp_path


def brute_hamming(queries, codes, k):
    d = np.unpackbits(queries[:, None, :] ^ codes[None], axis=2).sum(axis=2)
    order = np.lexsort((np.broadcast_to(np.arange(len(codes)), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def brute_cosine(queries, embeddings, k):
    s = queries.astype(np.float64) @ embeddings.T.astype(np.float64)
    order = np.lexsort((np.broadcast_to(np.arange(len(embeddings)), s.shape), -s), axis=1)[:, :k]
    return order


@pytest.mark.parametrize("k", [1, 5, 40])
def test_binary_flat_equals_brute_force_hamming_with_ties_by_id(index_dir, k):
    opened = IndexDir(index_dir)
    queries = np.random.default_rng(1).integers(0, 256, (50, 2), dtype=np.uint8)  # 16 bits: ties everywhere
    result = modes.search_binary(opened, queries, k)
    distances, ids = brute_hamming(queries, opened.store.codes, k)
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_array_equal(result.scores, distances)


@pytest.mark.parametrize("shortlist", [7, 40, 150])
def test_a_bflat_shortlist_is_the_nearest_codes_by_distance_then_row_without_a_second_scan(index_dir, shortlist):
    opened = IndexDir(index_dir)
    queries = np.random.default_rng(3).integers(0, 256, (50, 2), dtype=np.uint8)  # 16 bits: ties at every boundary
    _, expected = brute_hamming(queries, opened.store.codes, shortlist)
    np.testing.assert_array_equal(modes.shortlist_rows(opened, queries, "rerank", 1, shortlist, "BFlat"), expected)


@pytest.mark.parametrize("k", [1, 10, 30])
def test_float_flat_equals_brute_force_cosine(index_dir, k):
    opened = IndexDir(index_dir)
    queries = np.concatenate([opened.float_rows([5, 12]), np.random.default_rng(2).standard_normal((20, 16)).astype(np.float32)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    result = modes.search_float(opened, queries, k)
    np.testing.assert_array_equal(result.ids, brute_cosine(queries, opened.float_rows(slice(None)), k))
    assert list(result.ids[0][:min(k, 11)]) == [5, *range(10, 20)][:min(k, 11)]  # duplicates ordered by row


def test_rerank_with_the_whole_index_as_shortlist_equals_float_search(index_dir):
    opened = IndexDir(index_dir)
    rows = np.arange(0, 300, 7)
    exact = modes.search_float(opened, opened.float_rows(rows), 10)
    reranked = modes.search_rerank(opened, opened.float_rows(rows), opened.store.codes[rows], 10, shortlist=len(opened.store))
    np.testing.assert_array_equal(reranked.ids, exact.ids)
    np.testing.assert_array_equal(reranked.scores, exact.scores)


def test_approximate_indexes_return_sorted_valid_rows(index_dir):
    opened = IndexDir(index_dir, nprobe=4, ef_search=64)
    queries = opened.store.codes[:20]
    for spec in ("BHNSW32", "BIVF4"):
        result = modes.search_binary(opened, queries, 5, spec)
        assert (result.ids >= 0).all() and (np.diff(result.scores, axis=1) >= 0).all()
        np.testing.assert_array_equal(result.ids[:, 0], np.arange(20))  # each code finds itself (distance 0, lowest row)


def test_a_product_quantised_float_index_gives_faiss_pq_candidates_ranked_by_exact_cosine(tmp_path):
    """hashpa index --float-index PQ4np searched in float mode: FAISS's own IndexPQ candidates (k plus
    the extra ones fetched), re-scored with the stored floats under the tie rule, like every
    approximate float index."""
    store = random_store(n=400, duplicates=False)
    write_index_dir(tmp_path, store, ("Flat", "PQ4np"), ("BFlat",))
    opened = IndexDir(tmp_path)
    assert opened.meta.entry("float", "PQ4np")["ntotal"] == 400
    queries = store.embeddings[:30]
    result = modes.search_float(opened, queries, 10, "PQ4np")
    reference = faiss.index_factory(16, "PQ4np", faiss.METRIC_INNER_PRODUCT)
    reference.train(store.embeddings)
    reference.add(store.embeddings)
    _, candidates = reference.search(queries, 10 + modes.EXTRA_CANDIDATES)
    for query, found, row in zip(queries, result.ids, candidates):
        cosines = store.embeddings[row].astype(np.float64) @ query.astype(np.float64)
        np.testing.assert_array_equal(found, row[np.lexsort((row, -cosines))][:10])
    assert (result.ids[:, 0] == np.arange(30)).mean() > 0.9  # each row mostly finds itself among its candidates


def test_an_open_index_maps_its_embeddings_from_the_store(index_dir):
    loaded = read_store(index_file(index_dir, "store.h5"))
    opened = IndexDir(index_dir)
    assert isinstance(opened.store.embeddings, np.memmap) and not isinstance(loaded.embeddings, np.memmap)
    np.testing.assert_array_equal(opened.store.embeddings, loaded.embeddings)
    np.testing.assert_array_equal(opened.float_rows([299, 3, 3]), loaded.embeddings[[299, 3, 3]])


def test_a_float16_store_is_mapped_and_reranks_in_float32(tmp_path):
    store = random_store(duplicates=False)
    store.embeddings = store.embeddings.astype(np.float16)
    write_index_dir(tmp_path, store, ("Flat",), ("BFlat",))
    opened = IndexDir(tmp_path)
    assert opened.store.embeddings.dtype == np.float16 and opened.float_rows([0]).dtype == np.float32
    queries = opened.float_rows(slice(0, 10))
    result = modes.search_rerank(opened, queries, opened.store.codes[:10], 5, shortlist=len(store))
    np.testing.assert_array_equal(result.ids, brute_cosine(queries, store.embeddings.astype(np.float32), 5))


def test_files_round_trip_through_plain_h5py_and_faiss(index_dir):
    store = read_store(index_file(index_dir, "store.h5"))
    with h5py.File(index_file(index_dir, "store.h5"), "r") as h5:
        assert h5["codes"].dtype == np.uint8 and h5["codes"].shape == (300, 2)
        np.testing.assert_array_equal(h5["codes"][()], store.codes)
        np.testing.assert_array_equal(h5["embeddings"][()], store.embeddings)
        assert h5["paths"].asstr()[0] == "c0/img_0000.png"
        assert h5.attrs["bits"] == 16 and h5.attrs["model_fingerprint"] == "f" * 16
    binary = faiss.read_index_binary(str(index_file(index_dir, "binary-BFlat.faiss")))
    assert binary.ntotal == 300 and binary.code_size == 2
    _, ids = binary.search(store.codes[[7]], 1)
    assert ids[0, 0] == 7
    flat = faiss.read_index(str(index_file(index_dir, "float-Flat.faiss")))
    similarities, ids = flat.search(store.embeddings[[42]], 1)
    assert ids[0, 0] == 42 and similarities[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_model_mismatch_and_missing_index_are_clear_errors(index_dir):
    opened = IndexDir(index_dir)
    with pytest.raises(ModelMismatchError, match="built with model ffff"):
        opened.check_model("0123456789abcdef")
    with pytest.raises(HashpaError, match="no float index 'IVF8,Flat'"):
        modes.search_float(opened, opened.float_rows(slice(0, 1)), 1, "IVF8,Flat")
    with pytest.raises(HashpaError, match="-k must be"):
        modes.check_request(opened, "float", 1000, None)


def test_a_store_that_does_not_match_index_json_is_detected(index_dir):
    write_index_dir(index_dir / "other", random_store(seed=3))
    (index_file(index_dir, "store.h5")).write_bytes((index_file(index_dir / "other", "store.h5")).read_bytes())
    with pytest.raises(HashpaError, match="does not match the checksum"):
        IndexDir(index_dir)


def test_bad_factory_strings_are_clear_errors(tmp_path):
    with pytest.raises(HashpaError, match="factory string"):
        write_index_dir(tmp_path, random_store(), ("NotAnIndex",), ())
    with pytest.raises(HashpaError, match="needs at least 1024 vectors"):
        write_index_dir(tmp_path, random_store(), (), ("BIVF1024",))
