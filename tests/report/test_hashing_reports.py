"""hashpa compare and hashpa eval carry the deep-hashing protocol: mAP@1000, mAP@ALL (and its
tie-aware value), P@H<=2 and the PR curves in their JSON, a table and a plot; with a query folder
too; each figure equal to the metric computed from the stored vectors."""

import json

import pytest

from hashpa.indexdir import read_store
from hashpa.metrics.hashing import hashing_scores
from tests.conftest import index_file, make_image_folder
from tests.test_bad_inputs import hashpa


@pytest.fixture(scope="module")
def indexed(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("hashing-reports")
    folder = make_image_folder(base / "photos", classes=3, per_class=8, size=32)
    hashpa("index", folder, "--run-dir", trained_run, "--out", base / "idx", "--workers", 0).succeeded()
    return base


def test_compare_json_carries_the_hashing_protocol(indexed):
    report = json.loads(hashpa("compare", indexed / "idx", "--json", "--repeats", 1, "--latency-queries", 0).succeeded().stdout)
    codes = report["hashing"]["codes"]
    for key in ("map@1000", "map@all", "map@all_tie_aware", "p@h<=2", "p@h<=2_empty", "pr_curve_radius", "pr_curve_rank"):
        assert key in codes, key
    assert "map@all" in report["hashing"]["float"] and "p@h<=2" not in report["hashing"]["float"]
    store = read_store(index_file(indexed / "idx", "store.h5"))
    expected = hashing_scores(store.index_codes, store.labels)  # leave-one-out over the stored codes
    assert codes["map@all"] == pytest.approx(expected["map@all"]) and codes["p@h<=2"] == pytest.approx(expected["p@h<=2"])
    assert (indexed / "idx" / "compare-pr.png").stat().st_size > 0
    assert "| codes |" in (indexed / "idx" / "compare.md").read_text()


def test_compare_with_a_query_folder_scores_queries_against_the_database(indexed, trained_run):
    queries = make_image_folder(indexed / "queries", classes=3, per_class=2, size=32, seed=11)
    report = json.loads(hashpa("compare", indexed / "idx", "--queries", queries, "--json", "--repeats", 1, "--latency-queries", 0,
                               "--out", indexed / "q-report").succeeded().stdout)
    assert report["hashing"]["codes"]["queries"] == 6 and 0 <= report["hashing"]["codes"]["map@all"] <= 1


def test_eval_json_carries_the_hashing_protocol(trained_run, tmp_path):
    report = json.loads(hashpa("eval", trained_run, "--json", "--workers", 0, "--out", tmp_path / "eval").succeeded().stdout)
    assert set(report["hashing"]) == {"float", "codes"}
    assert {"map@1000", "map@all", "map@all_tie_aware", "p@h<=2", "pr_curve_radius"} <= set(report["hashing"]["codes"])
    assert (tmp_path / "eval" / "eval-pr.png").is_file() and "mAP@ALL" in (tmp_path / "eval" / "eval.md").read_text()


def test_eval_and_compare_leave_the_protocol_out_beyond_the_pairs_it_ranks_in_full_and_say_so(indexed, trained_run, tmp_path, monkeypatch):
    from hashpa.metrics import hashing

    monkeypatch.setattr(hashing, "FULL_RANKING_PAIRS", 10)
    out = hashpa("eval", trained_run, "--workers", 0, "--out", tmp_path / "eval").succeeded()
    assert "Deep-hashing protocol left out" in out.stdout and "wrote eval.json and eval.md in" in out.stdout
    assert not (tmp_path / "eval" / "eval-pr.png").exists() and "skipped" in json.loads((tmp_path / "eval" / "eval.json").read_text())["hashing"]
    report = json.loads(hashpa("compare", indexed / "idx", "--json", "--repeats", 1, "--latency-queries", 0, "--out", tmp_path / "cmp").succeeded().stdout)
    assert "pairs to rank in full" in report["hashing"]["skipped"] and report["methods"][0]["recall@1"] >= 0
