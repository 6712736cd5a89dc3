"""The deep-hashing metrics against brute-force references written from their definitions:
mAP@K and mAP@ALL, precision@K, P@H<=2, the PR curves, the tie-aware mAP (every order of the tied
items enumerated), and multi-label relevance."""

import itertools

import numpy as np
import pytest

from hashpa.errors import HashpaError
from hashpa.metrics.hashing import expected_average_precision, hashing_scores


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(axis=2)


def relevant_pairs(q_labels, db_labels) -> np.ndarray:
    if q_labels.ndim == 2:
        return np.array([[bool((q & d).any()) for d in db_labels] for q in q_labels])
    return np.array([[q >= 0 and q == d for d in db_labels] for q in q_labels])


def average_precision_of(ranking, relevant) -> float:
    """AP of one ranking (item ids, best first), by the definition: 0 when nothing relevant is in it."""
    found, total = 0, 0.0
    for rank, j in enumerate(ranking, start=1):
        if relevant[j]:
            found += 1
            total += found / rank
    return total / found if found else 0.0


def brute(dist, rel, cutoff):
    """mAP@cutoff over the queries, each ranked by (distance, id)."""
    return np.mean([average_precision_of(sorted(range(len(d)), key=lambda j: (d[j], j))[:cutoff], r) for d, r in zip(dist, rel)])


@pytest.fixture
def codes():
    rng = np.random.default_rng(0)
    db = rng.integers(0, 256, (60, 2), dtype=np.uint8)
    queries = rng.integers(0, 256, (15, 2), dtype=np.uint8)
    return queries, rng.integers(0, 4, 15), db, rng.integers(0, 4, 60)


def test_map_precision_and_radius_against_brute_force(codes):
    queries, q_labels, db, db_labels = codes
    scores = hashing_scores(queries, q_labels, db, db_labels, map_at=(10, "all"), precision_at=(5, 20))
    dist, rel = hamming(queries, db), relevant_pairs(q_labels, db_labels)
    assert scores["map@10"] == pytest.approx(brute(dist, rel, 10))
    assert scores["map@all"] == pytest.approx(brute(dist, rel, 60))
    for k in (5, 20):
        expected = np.mean([np.mean([rel[i][j] for j in sorted(range(60), key=lambda j: (dist[i][j], j))[:k]]) for i in range(15)])
        assert scores[f"precision@{k}"] == pytest.approx(expected)
    inside = dist <= 2
    per_query = [rel[i][inside[i]].mean() if inside[i].any() else 0.0 for i in range(15)]
    assert scores["p@h<=2"] == pytest.approx(np.mean(per_query)) and scores["p@h<=2_empty"] == int((~inside.any(axis=1)).sum())
    curve = scores["pr_curve_radius"]
    for radius in (0, 3, 8, 16):
        within = dist <= radius
        retrieving = within.any(axis=1)
        assert curve["recall"][radius] == pytest.approx(np.mean([rel[i][within[i]].sum() / rel[i].sum() for i in range(15) if rel[i].any()]))
        expected = np.mean([rel[i][within[i]].mean() for i in range(15) if retrieving[i]]) if retrieving.any() else None
        assert curve["precision"][radius] == (pytest.approx(expected) if expected is not None else None)
    assert curve["recall"][-1] == pytest.approx(1.0)


def test_leave_one_out_excludes_each_query(codes):
    _, _, db, db_labels = codes
    scores = hashing_scores(db, db_labels, map_at=("all",), precision_at=(10,))
    dist, rel = hamming(db, db).astype(float), relevant_pairs(db_labels, db_labels)
    np.fill_diagonal(rel, False)
    reference = []
    for i in range(60):
        others = [j for j in range(60) if j != i]
        reference.append(brute(dist[i : i + 1, others], rel[i : i + 1, others], 59))
    assert scores["map@all"] == pytest.approx(np.mean(reference)) and scores["queries"] == 60


def test_the_tie_aware_map_is_the_mean_over_every_order_of_the_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        dist = rng.integers(0, 3, 7)
        rel = rng.random(7) < 0.5
        levels = sorted(set(dist.tolist()))
        groups = [[j for j in range(7) if dist[j] == level] for level in levels]
        aps = [average_precision_of([j for group in orders for j in group], rel)
               for orders in itertools.product(*(itertools.permutations(g) for g in groups))]
        items = np.array([[len(g) for g in groups]], dtype=float)
        hits = np.array([[int(rel[g].sum()) for g in groups]], dtype=float)
        assert expected_average_precision(items, hits)[0] == pytest.approx(np.mean(aps))


def test_tie_aware_and_by_id_map_agree_without_ties_and_differ_with_them():
    query = np.zeros((1, 1), np.uint8)
    distinct = np.array([[(1 << n) - 1] for n in range(9)], np.uint8)  # distances 0..8 from the query: no ties
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0])
    plain = hashing_scores(query, [0], distinct, labels, map_at=("all",), precision_at=(1,))
    assert plain["map@all_tie_aware"] == pytest.approx(plain["map@all"])
    tied = np.zeros((4, 1), np.uint8)  # every item at distance 0: by id, the relevant ones come last
    scores = hashing_scores(query, [0], tied, np.array([1, 1, 0, 0]), map_at=("all",), precision_at=(1,))
    assert scores["map@all"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert scores["map@all_tie_aware"] == pytest.approx(np.mean([(1 / a + 2 / b) / 2 for a, b in itertools.combinations(range(1, 5), 2)]))


def test_multi_label_relevance_is_a_shared_label():
    rng = np.random.default_rng(5)
    db = rng.integers(0, 256, (40, 2), dtype=np.uint8)
    labels = rng.random((40, 5)) < 0.3
    queries, q_labels = db[:10], labels[:10]
    scores = hashing_scores(queries, q_labels, db[10:], labels[10:], map_at=("all",), precision_at=(5,))
    rel = relevant_pairs(q_labels, labels[10:])
    assert scores["map@all"] == pytest.approx(brute(hamming(queries, db[10:]), rel, 30))
    as_ints = hashing_scores(queries, q_labels.astype(int), db[10:], labels[10:].astype(int), map_at=("all",), precision_at=(5,))
    assert as_ints["map@all"] == scores["map@all"]


def test_float_pr_curve_by_rank_against_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    scores = hashing_scores(x, labels, metric="cosine", map_at=("all",), precision_at=(3,))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    curve = scores["pr_curve_rank"]
    for point, rank in enumerate(curve["rank"]):
        precisions, recalls = [], []
        for i in range(30):
            others = sorted((j for j in range(30) if j != i), key=lambda j: (-sim[i, j], j))[:rank]
            hits = sum(labels[j] == labels[i] for j in others)
            precisions.append(hits / rank)
            total = sum(labels[j] == labels[i] for j in range(30) if j != i)
            if total:
                recalls.append(hits / total)
        assert curve["precision"][point] == pytest.approx(np.mean(precisions), abs=1e-6)
        assert curve["recall"][point] == pytest.approx(np.mean(recalls), abs=1e-6)


@pytest.mark.parametrize("labels,needle", [
    (np.zeros((10, 3)) + 0.5, "multi-hot"),
    (np.zeros(9, int), "shape [10]"),
    (np.zeros(10), "integers"),
])
def test_bad_labels_are_clear_errors(labels, needle):
    codes = np.zeros((10, 1), np.uint8)
    with pytest.raises(HashpaError, match=None) as caught:
        hashing_scores(codes, labels)
    assert needle in str(caught.value)
