"""The asymmetric kernels and mode against brute force: exact scan (both scorings), shortlist, equal codes."""

import numpy as np
import pytest

from hashpa.errors import HashpaError
from hashpa.indexdir import IndexDir, fit_database_codes, write_index_dir
from hashpa.search import asymmetric, modes
from hashpa.search.asymmetric import DistinctCodes, asymmetric_scan
from tests.search.test_modes import random_store


@pytest.fixture
def fitted_index_dir(tmp_path):
    store = random_store(n=300, dim=16, bits=16)
    store.fitted = fit_database_codes(store.embeddings, 16)
    write_index_dir(tmp_path, store, ("Flat",), ("BFlat",))
    return tmp_path


def brute_force(projected: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    signs = np.unpackbits(codes, axis=1) * 2.0 - 1.0
    scores = projected.astype(np.float64) @ signs.T
    order = np.lexsort((np.broadcast_to(np.arange(len(codes)), scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("k", [1, 7, 300])
@pytest.mark.parametrize("scoring", ["matrix product", "byte lookup tables"])
def test_asymmetric_scan_equals_brute_force_over_blocks(fitted_index_dir, k, scoring, monkeypatch):
    monkeypatch.setattr(asymmetric, "BLOCK", 64)  # 300 rows: 5 blocks to merge
    monkeypatch.setattr(asymmetric, "LOOKUP_BELOW", 1000 if scoring == "byte lookup tables" else 1)
    opened = IndexDir(fitted_index_dir)
    queries = np.concatenate([opened.float_rows([5, 12]), np.random.default_rng(3).standard_normal((30, 16)).astype(np.float32)])
    result = modes.search_asymmetric(opened, queries, k)
    projected = (queries.astype(np.float64) - opened.store.fitted.hasher.mean) @ opened.store.fitted.hasher.projection
    scores, order = brute_force(projected, opened.store.fitted.codes, k)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-5)
    assert (result.ids == order).mean() > 0.99  # float32 vs float64 may swap near-equal scores
    np.testing.assert_array_equal(result.ids[0, : min(k, 11)], order[0, : min(k, 11)])  # rows 5, 10..19: equal embeddings, by row


@pytest.mark.parametrize("scoring", ["matrix product", "byte lookup tables"])
def test_equal_codes_tie_exactly_and_come_in_row_order(scoring, monkeypatch):
    """A BLAS product rounds equal columns differently at a block's edges (seen with OpenBLAS): the
    scan scores each distinct code once, so copies anywhere in the database tie exactly."""
    monkeypatch.setattr(asymmetric, "BLOCK", 64)
    monkeypatch.setattr(asymmetric, "LOOKUP_BELOW", 1000 if scoring == "byte lookup tables" else 1)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (500, 8), dtype=np.uint8)
    copies = [3, 64, 65, 127, 128, 200, 333, 499]  # across blocks and at their edges
    codes[copies] = codes[3]
    projected = rng.standard_normal((40, 64)).astype(np.float32)
    projected[:5] = (np.unpackbits(codes[3]) * 2.0 - 1.0)  # queries whose best code is the repeated one
    scores, ids = asymmetric_scan(projected, codes, 20)
    for row_scores, row_ids in zip(scores, ids):
        found = np.isin(row_ids, copies)
        assert list(row_ids[found]) == sorted(row_ids[found]) and len(set(row_scores[found].tolist())) <= 1
    np.testing.assert_array_equal(ids[:5, : len(copies)], np.broadcast_to(copies, (5, len(copies))))


def test_distinct_codes_group_every_row_under_its_code():
    codes = np.array([[1], [2], [1], [3], [2], [1]], np.uint8)
    distinct = DistinctCodes.of(codes)
    assert distinct.codes.tolist() == [[1], [2], [3]] and distinct.first_rows.tolist() == [0, 1, 3]
    groups = [distinct.rows[distinct.starts[j] : distinct.starts[j + 1]].tolist() for j in range(len(distinct))]
    assert groups == [[0, 2, 5], [1, 4], [3]]
    negated, rows = distinct.expand(np.array([[-5.0, -5.0]]), np.array([[0, 1]]), 4)
    assert rows.tolist() == [[0, 1, 2, 4]] and negated.tolist() == [[-5.0] * 4]  # equal scores: rows interleave by id


def test_asymmetric_search_of_a_hamming_shortlist(fitted_index_dir, monkeypatch):
    monkeypatch.setattr(asymmetric, "LOOKUP_BELOW", 1000)  # the scan adds the same table entries in the same order
    opened = IndexDir(fitted_index_dir)
    queries = np.concatenate([opened.float_rows([5, 12]), np.random.default_rng(4).standard_normal((20, 16)).astype(np.float32)])
    whole = modes.search_asymmetric(opened, queries, 7, shortlist=300)
    scan = modes.search_asymmetric(opened, queries, 7)
    np.testing.assert_array_equal(whole.ids, scan.ids)
    np.testing.assert_array_equal(whole.scores, scan.scores)
    short = modes.search_asymmetric(opened, queries, 7, shortlist=20)
    codes = opened.store.fitted.hasher.encode(queries)
    hamming = modes.search_binary(opened, codes, 20).ids
    assert all(set(found) <= set(listed) for found, listed in zip(short.ids, hamming))
    assert (np.diff(short.scores, axis=1) <= 0).all()
    np.testing.assert_array_equal(short.ids[0, :7], [5, 10, 11, 12, 13, 14, 15])  # equal codes by row
    projected = opened.store.fitted.hasher.project(queries)
    signs = np.unpackbits(opened.store.index_codes, axis=1) * 2.0 - 1.0
    np.testing.assert_allclose(short.scores, np.take_along_axis(projected @ signs.T, short.ids, axis=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["rerank", "asymmetric"])
def test_a_shortlist_below_one_is_refused(fitted_index_dir, mode):
    with pytest.raises(HashpaError, match="--shortlist must be at least 1"):
        modes.check_request(IndexDir(fitted_index_dir), mode, 3, 0)


def test_asymmetric_search_needs_fitted_codes(tmp_path):
    write_index_dir(tmp_path, random_store())
    with pytest.raises(HashpaError, match="--codes itq"):
        modes.check_request(IndexDir(tmp_path), "asymmetric", 3, None)
