import itertools

import numpy as np
import pytest

from hashpa import recall_at_k
from hashpa.errors import HashpaError
from hashpa.metrics.knn import exact_knn
from hashpa.metrics.ranking import top_k
from hashpa.metrics.retrieval import evaluate_retrieval


def brute_force_ranking(queries, database, metric, exclude_self):
    """Full rankings by (distance, id), written plainly."""
    if metric == "cosine":
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = database / np.linalg.norm(database, axis=1, keepdims=True)
        dist = -(q.astype(np.float64) @ d.T.astype(np.float64))
    else:
        dist = np.array([[sum(bin(a ^ b).count("1") for a, b in zip(x, y)) for y in database] for x in queries], float)
    rankings = []
    for i, row in enumerate(dist):
        ids = [j for j in range(len(database)) if not (exclude_self and j == i)]
        rankings.append(sorted(ids, key=lambda j: (row[j], j)))
    return rankings


def brute_force_metrics(queries, labels, metric, ks, database=None, database_labels=None):
    exclude_self = database is None
    database = queries if exclude_self else database
    database_labels = labels if exclude_self else database_labels
    rankings = brute_force_ranking(queries, database, metric, exclude_self)
    recall = {k: np.mean([any(database_labels[j] == labels[i] for j in r[:k]) for i, r in enumerate(rankings)]) for k in ks}
    aps, rps = [], []
    for i, r in enumerate(rankings):
        rel = [database_labels[j] == labels[i] for j in r]
        big_r = sum(rel)
        if big_r == 0:
            continue
        hits, ap = 0, 0.0
        for rank, is_rel in enumerate(rel[:big_r], start=1):
            if is_rel:
                hits += 1
                ap += hits / rank
        aps.append(ap / big_r)
        rps.append(hits / big_r)
    return recall, np.mean(aps), np.mean(rps)


@pytest.mark.parametrize("seed", range(3))
def test_cosine_metrics_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    y = rng.integers(0, 5, 60)
    result = evaluate_retrieval(x, y, ks=(1, 2, 4, 8))
    recall, map_r, r_precision = brute_force_metrics(x, y, "cosine", (1, 2, 4, 8))
    assert result["recall"] == pytest.approx(recall)
    assert result["map_at_r"] == pytest.approx(map_r)
    assert result["r_precision"] == pytest.approx(r_precision)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("device", [None, "cpu"])
def test_hamming_metrics_equal_brute_force_with_ties_by_id(seed, device):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (80, 1), dtype=np.uint8)  # 8 bits: many ties
    y = rng.integers(0, 4, 80)
    result = evaluate_retrieval(codes, y, metric="hamming", device=device)
    recall, map_r, r_precision = brute_force_metrics(codes, y, "hamming", (1, 2, 4, 8))
    assert result["recall"] == pytest.approx(recall)
    assert result["map_at_r"] == pytest.approx(map_r)
    assert result["r_precision"] == pytest.approx(r_precision)


def test_separate_database_and_small_chunks():
    rng = np.random.default_rng(5)
    q, d = rng.standard_normal((30, 6)), rng.standard_normal((50, 6))
    qy, dy = rng.integers(0, 3, 30), rng.integers(0, 3, 50)
    result = evaluate_retrieval(q, qy, d, dy, chunk_bytes=2000)  # forces one-row chunks
    recall, map_r, _ = brute_force_metrics(q.astype(np.float32), qy, "cosine", (1, 2, 4, 8), d.astype(np.float32), dy)
    assert result["recall"] == pytest.approx(recall)
    assert result["map_at_r"] == pytest.approx(map_r)


def test_hand_worked_example():
    # 1-D embeddings on a circle: cosine ranks by angle.
    angles = np.array([0.0, 0.1, 0.5, 3.0, 3.1])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 1, 1, 1])
    # nearest neighbours: 0->1 (hit), 1->0 (hit), 2->1 (miss), 3->4 (hit), 4->3 (hit)
    assert recall_at_k(x, labels, ks=(1,)) == {1: pytest.approx(0.8)}
    result = evaluate_retrieval(x, labels, ks=(1,))
    # R per query: 1, 1, 2, 2, 2. Query 2 ranks 1,0,3,4 -> no positive in its top 2: AP@R 0.
    assert result["map_at_r"] == pytest.approx((1 + 1 + 0 + 1 + 1) / 5)


def test_tie_aware_recall_equals_the_average_over_all_tie_orders():
    codes = np.packbits(np.array([[0] * 8, [0] * 7 + [1], [0] * 6 + [1, 0], [0] * 6 + [1, 1], [1] * 8, [0] * 5 + [1, 0, 0]], np.uint8), axis=1)
    labels = np.array([0, 1, 0, 1, 1, 0])
    result = evaluate_retrieval(codes, labels, metric="hamming", ks=(1, 2))
    n = len(codes)
    dist = np.array([[bin(int(a) ^ int(b)).count("1") for b in codes[:, 0]] for a in codes[:, 0]])
    expected = {1: 0.0, 2: 0.0}
    for i in range(n):
        others = [j for j in range(n) if j != i]
        orders = list(itertools.permutations(others))
        for k in (1, 2):
            hits = 0
            for order in orders:  # every order of the database, sorted stably by distance
                ranked = sorted(order, key=lambda j: dist[i, j])
                hits += any(labels[j] == labels[i] for j in ranked[:k])
            expected[k] += hits / len(orders) / n
    assert result["expected_recall"] == pytest.approx(expected)
    assert result["recall"] != pytest.approx(result["expected_recall"])  # this case has ties that matter


def test_hashing_map_at_k_and_all():
    labels = np.array([0, 0, 1, 1])
    codes = np.packbits(np.array([[0] * 8, [0] * 7 + [1], [1] * 8, [1] * 7 + [0]], np.uint8), axis=1)
    result = evaluate_retrieval(codes, labels, metric="hamming", ks=(1,), map_at=(1, "all"))
    assert result["map"] == {1: pytest.approx(1.0), "all": pytest.approx(1.0)}
    # a query whose first hit is at rank 2 has AP@all 1/2 and AP@1 0
    labels = np.array([0, 1, 0])
    codes = np.packbits(np.array([[0] * 8, [0] * 7 + [1], [0] * 6 + [1, 1]], np.uint8), axis=1)
    result = evaluate_retrieval(codes, labels, metric="hamming", ks=(1,), map_at=(1, "all"))
    # query 0: ranks 1 (miss), 2 (hit) -> AP 1/2; query 1: no positive -> 0; query 2: ranks 1, 0 -> hit at 2 -> 1/2
    assert result["map"]["all"] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert result["map"][1] == pytest.approx(0.0)


def test_exact_knn_matches_brute_force():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 4, (40, 1), dtype=np.uint8)  # only 4 distinct codes: ties everywhere
    scores, ids = exact_knn(codes, k=10, metric="hamming")
    ranking = brute_force_ranking(codes, codes, "hamming", exclude_self=True)
    np.testing.assert_array_equal(ids, [r[:10] for r in ranking])
    x = rng.standard_normal((40, 5)).astype(np.float32)
    scores, ids = exact_knn(x[:10], x, k=5)
    ranking = brute_force_ranking(x[:10], x, "cosine", exclude_self=False)
    np.testing.assert_array_equal(ids, [r[:5] for r in ranking])
    assert np.all(np.diff(scores, axis=1) <= 1e-7)


@pytest.mark.parametrize("k", [1, 3, 10, 30])
def test_top_k_orders_by_distance_then_id(k):
    rng = np.random.default_rng(k)
    integers = rng.integers(0, 5, (50, 30)).astype(np.int32)  # ties at every k
    floats = rng.standard_normal((50, 30)).astype(np.float32)
    floats[:10, :5] = -0.0  # signed zeros equal zeros
    floats[10:20, 5:8] = 0.0
    floats[20:25, 3] = np.nan  # NaN ranks after every number
    for distances in (integers, floats):
        reference = [sorted(range(30), key=lambda j, row=row: (np.isnan(row[j]), 0.0 if np.isnan(row[j]) else row[j] + 0.0, j))[:k]
                     for row in distances]
        np.testing.assert_array_equal(top_k(distances, k), reference)


def test_duplicate_float_vectors_tie_by_id():
    x = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]], np.float32)
    _, ids = exact_knn(x[[5]], x, k=6)
    np.testing.assert_array_equal(ids, [[5, 0, 1, 2, 3, 4]])  # itself, then the tied duplicates by id


@pytest.mark.parametrize("separate_database", [True, False])
def test_equal_rows_of_a_large_database_tie_by_id(separate_database):
    """A BLAS product rounds equal columns at a block's edges differently (seen with OpenBLAS): equal
    embeddings among many must still get equal scores and come in id order."""
    rng = np.random.default_rng(0)
    database = rng.standard_normal((300, 64)).astype(np.float32)
    repeated = [5, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 40, 77, 299]
    database[repeated] = database[5]
    queries = np.concatenate([database[[5, 40]], rng.standard_normal((254, 64)).astype(np.float32)])
    if separate_database:
        scores, ids = exact_knn(queries, database, k=40)
    else:
        scores, ids = exact_knn(database, None, k=40)
    for row_scores, row_ids in zip(scores, ids):
        found = np.isin(row_ids, repeated)
        assert list(row_ids[found]) == sorted(row_ids[found])
        assert len(set(row_scores[found].tolist())) <= 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(queries=np.zeros((4, 2), np.uint8), metric="cosine"), "float embeddings"),
        (dict(queries=np.zeros((4, 2), np.float32), metric="hamming"), "packed uint8"),
        (dict(queries=np.zeros((4, 2), np.float32), metric="euclid"), "unknown metric"),
        (dict(queries=np.full((4, 2), np.nan, np.float32)), "NaN"),
        (dict(queries=np.ones((4, 2), np.float32), query_labels=np.zeros(3, int)), "shape"),
        (dict(queries=np.ones((4, 2), np.float32), ks=(8,)), "Recall@8"),
    ],
)
def test_bad_inputs_are_clear_errors(kwargs, match):
    args = dict(query_labels=np.zeros(4, int), metric="cosine")
    args.update(kwargs)
    with pytest.raises(HashpaError, match=match):
        recall_at_k(**args)


def test_a_paired_database_excludes_each_querys_own_row():
    rng = np.random.default_rng(4)
    x, labels = rng.standard_normal((60, 8)).astype(np.float32), rng.integers(0, 4, 60)
    alone = evaluate_retrieval(x, labels)
    paired = evaluate_retrieval(x, labels, database=x, database_labels=labels, paired=True)
    unpaired = evaluate_retrieval(x, labels, database=x, database_labels=labels)
    assert paired["recall"] == alone["recall"] and paired["map_at_r"] == pytest.approx(alone["map_at_r"])
    assert unpaired["recall"][1] == 1.0  # without pairing every query finds itself
    with pytest.raises(HashpaError, match="as many rows"):
        evaluate_retrieval(x, labels, database=x[:10], database_labels=labels[:10], paired=True)
