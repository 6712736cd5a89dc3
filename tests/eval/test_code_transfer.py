"""eval/code_transfer: linear codes with their parts fitted on the training or the test photos."""

import json

import numpy as np
import pytest

from eval import code_transfer
from hashpa.errors import HashpaError
from hashpa.metrics.retrieval import retrieval_scores
from hashpa.quantizers import fit_itq
from tests.conftest import make_image_folder


def clusters(seed: int, classes: int = 6, per_class: int = 20, dim: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)) * 3
    labels = np.repeat(np.arange(classes), per_class)
    return (centres[labels] + rng.standard_normal((len(labels), dim))).astype(np.float32), labels


def by_parts(rows: list[dict]) -> dict:
    return {(r["centre"], r["subspace"], r["rotation"]): r for r in rows}


def test_the_training_fit_row_is_pca_itq_and_fitting_to_the_same_photos_changes_nothing():
    x, labels = clusters(0)
    rows = by_parts(code_transfer.transfer_rows(x, x, labels, 16))
    reference = retrieval_scores(fit_itq(x, 16).encode(x), labels, metric="hamming")
    assert rows["train", "train", "train (ITQ)"]["recall@1"] == reference["recall@1"]
    assert rows["train", "train", "train (ITQ)"]["map@r"] == reference["map@r"]
    for parts in (("test", "train", "train (ITQ)"), ("test", "train", "test (ITQ)"), ("test", "test", "test (ITQ)")):
        assert rows[parts]["recall@1"] == pytest.approx(reference["recall@1"]), parts


def test_new_classes_rows_and_their_scores():
    train, _ = clusters(1)
    test, labels = clusters(2)
    rows = code_transfer.transfer_rows(train, test, labels, 16)
    assert [(r["centre"], r["rotation"]) for r in rows] == [
        ("train", "train (ITQ)"), ("test", "train (ITQ)"), ("train", "none"), ("train", "random"),
        ("test", "test (ITQ)"), ("test", "test (ITQ)"), ("train", "float, no quantisation")]
    assert all(0 <= r["recall@1"] <= 1 for r in rows) and rows[-1]["dim"] == 16 and "expected_recall@1" not in rows[-1]


def test_too_few_photos_for_the_bits():
    x, labels = clusters(0, classes=2, per_class=8)
    with pytest.raises(HashpaError, match="more than 16 training and test photos"):
        code_transfer.transfer_rows(x, x, labels, 16)
    with pytest.raises(HashpaError, match=r"from 16 to 24 \(the embedding dimension\)"):
        code_transfer.transfer_rows(*clusters(0)[:1], *clusters(0), 32)


def test_main_on_a_trained_run(tmp_path):
    from hashpa.runs import resolve_config
    from hashpa.training import train

    folder = make_image_folder(tmp_path / "images", classes=4, per_class=20)
    config = resolve_config(dict(data=str(folder), split="half", epochs=1, batch_size=12, workers=0, code_epochs=0,
                                           out=str(tmp_path / "run"), model=dict(backbone="smallcnn", weights="none", dim=16, bits=16)))
    train(config)
    bench = tmp_path / "BENCH.md"
    bench.write_text("<!-- transfer:cpu:start -->\nstale body\n<!-- transfer:cpu:end -->\n")
    code_transfer.main([str(tmp_path / "run"), "--workers", "0", "--out", str(tmp_path / "out"), "--benchmarks", str(bench)])
    report = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert report["test_images"] == 40 and len(report["rows"]) == 7 and len(report["outside_queries"]["rows"]) == 6
    assert len(report["recentring"]) == 6 and "| median of the test photos |" in bench.read_text()
    assert "| test | test | test (ITQ) | 16 bits |" in bench.read_text() and "stale body" not in bench.read_text()


def test_main_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        code_transfer.main([str(tmp_path)])
    assert stopped.value.code == 2 and "not a run directory" in capsys.readouterr().err


def test_codes_fitted_to_a_database_queried_from_outside_the_fit():
    x, labels = clusters(3, classes=6, per_class=21)
    train, _ = clusters(4)
    result = code_transfer.outside_queries(x, labels, 16, train)
    assert (result["database"], result["queries"]) == (66, 60)  # 11 and 10 of every class
    rows = {(r["method"], r["fitted to"]): r for r in result["rows"]}
    assert list(rows) == [("float embedding", "-"), ("PCA-ITQ, Hamming", "the database"), ("PCA-ITQ, asymmetric", "the database"),
                          ("PCA-ITQ, Hamming", "database and queries"), ("PCA-ITQ, asymmetric", "database and queries"),
                          ("PCA-ITQ, Hamming", "the training photos")]
    in_database = np.zeros(len(x), bool)
    in_database[np.concatenate([np.flatnonzero(labels == c)[::2] for c in range(6)])] = True  # every other photo of each class
    hasher = fit_itq(x[in_database], 16)
    expected = retrieval_scores(hasher.encode(x[~in_database]), labels[~in_database], hasher.encode(x[in_database]), labels[in_database],
                                metric="hamming")
    assert rows["PCA-ITQ, Hamming", "the database"]["recall@1"] == expected["recall@1"]
    assert rows["float embedding", "-"]["recall@1"] > 0.9  # well-separated clusters
    with pytest.raises(HashpaError, match="half of the test photos"):
        code_transfer.outside_queries(x[:30], labels[:30], 16)


def test_median_thresholds_against_a_brute_force_median():
    rng = np.random.default_rng(5)
    for rows in (7, 8):  # odd: the middle value; even: halfway between the two middle ones
        logits = rng.standard_normal((rows, 16)).astype(np.float32)
        middle = np.sort(logits.astype(np.float64), axis=0)
        expected = middle[rows // 2] if rows % 2 else (middle[rows // 2 - 1] + middle[rows // 2]) / 2
        np.testing.assert_array_equal(code_transfer.median_thresholds(logits), expected)
        below = (logits < code_transfer.median_thresholds(logits)).sum(axis=0)
        assert (below == rows // 2).all()  # every bit splits the folder in half


def test_recentring_moves_thresholds_of_shifted_bits_back_to_the_middle():
    x, labels = clusters(6, classes=6, per_class=20, dim=16)
    shifted = x + 50.0  # every bit fires for every photo: one code for all
    rows = {r["thresholds"]: r for r in code_transfer.recentring_rows(shifted, labels)}
    assert list(rows)[:2] == ["as trained (BatchNorm centre of the training photos)", "median of the test photos"]
    as_trained = rows["as trained (BatchNorm centre of the training photos)"]
    assert as_trained["expected_recall@1"] == pytest.approx(19 / 119)  # one code for all: 19 of the 119 others share the class
    recentred = retrieval_scores(np.packbits(x > np.median(x, axis=0), axis=1), labels, metric="hamming")
    assert rows["median of the test photos"]["recall@1"] == recentred["recall@1"] > 0.9
    assert len(rows) == 6 and all(r["bits"] == 16 for r in rows.values())
