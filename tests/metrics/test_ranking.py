"""The ranking rule's primitives, and FAISS's Hamming k-NN, against plain references."""

import numpy as np
import pytest

from hashpa.metrics.knn import exact_knn
from hashpa.metrics.ranking import distinct_rows, first_k_of_segments, merge_candidates


def reference(distances, ids, k):
    """Per row, sorted by (distance, id), missing ids (-1) last: written plainly."""
    out = []
    for row_d, row_i in zip(distances, ids):
        pairs = sorted(zip(row_d, row_i), key=lambda p: (p[1] < 0, p[0] + 0.0 if p[1] >= 0 else 0.0, p[1]))
        out.append(pairs[:k])
    return np.array([[p[0] for p in r] for r in out]), np.array([[p[1] for p in r] for r in out])


@pytest.mark.parametrize("k", [1, 5, 12])
def test_merge_candidates_orders_by_distance_then_id_with_missing_last(k):
    rng = np.random.default_rng(k)
    distances = rng.integers(0, 4, (30, 12)).astype(np.float32)
    ids = np.stack([rng.permutation(100)[:12] for _ in range(30)]).astype(np.int64)
    ids[::3, 5] = -1  # empty slots, as FAISS returns them
    distances[::4, 2] = -0.0
    expected_d, expected_i = reference(distances, ids, k)
    got_d, got_i = merge_candidates(distances, ids, k)
    np.testing.assert_array_equal(got_i, expected_i)
    np.testing.assert_array_equal(got_d[got_i >= 0], expected_d[expected_i >= 0])


def test_merging_two_candidate_lists_equals_ranking_their_union():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 5, (20, 40)).astype(np.int32)
    ids = np.broadcast_to(np.arange(40), d.shape)
    first = merge_candidates(d[:, :20], ids[:, :20], 6)
    second = merge_candidates(d[:, 20:], ids[:, 20:], 6)
    merged = merge_candidates(np.concatenate([first[0], second[0]], axis=1), np.concatenate([first[1], second[1]], axis=1), 6)
    np.testing.assert_array_equal(merged[1], merge_candidates(d, ids, 6)[1])


def test_first_k_of_range_search_segments():
    limits = np.array([0, 3, 7])
    distances = np.array([2, 1, 1, 0, 3, 0, 0])
    ids = np.array([9, 8, 7, 5, 1, 6, 2])
    got_d, got_i = first_k_of_segments(limits, distances, ids, 2)
    np.testing.assert_array_equal(got_i, [[7, 8], [2, 5]])
    np.testing.assert_array_equal(got_d, [[1, 1], [0, 0]])


def test_distinct_rows_folds_repeats_in_first_row_order():
    rows = np.array([[3, 1], [0, 0], [3, 1], [2, 2], [0, 0]], np.float32)
    first, inverse = distinct_rows(rows)
    assert first.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1]
    np.testing.assert_array_equal(rows[first][inverse], rows)
    assert distinct_rows(np.eye(3)) is None


@pytest.mark.parametrize("n,k", [(70_000, 40), (3_000, 2_999)])
def test_faiss_hamming_knn_keeps_the_ranking_rule(n, k):
    """hashpa's Hamming k-NN is FAISS's knn_hamming: its heap must order equal distances by id, across
    its database blocks (65,536 codes) and up to the whole database."""
    rng = np.random.default_rng(n)
    database = rng.integers(0, 4, (n, 1), dtype=np.uint8)  # 2 live bits: ties everywhere
    queries = rng.integers(0, 256, (12, 1), dtype=np.uint8)
    distances, ids = exact_knn(queries, database, k=k, metric="hamming")
    d = np.bitwise_count(queries[:, None, :] ^ database[None]).sum(axis=2)
    order = np.lexsort((np.broadcast_to(np.arange(n), d.shape), d), axis=1)[:, :k]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(distances, np.take_along_axis(d, order, axis=1))
