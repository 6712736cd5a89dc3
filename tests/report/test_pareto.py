"""hashpa.report.pareto: the fronts against a brute-force reference, the choice within limits, and
compare's report, table, plot and command line carrying them."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hashpa.cli.main import cli
from hashpa.errors import HashpaError
from hashpa.indexdir import Store, write_index_dir
from hashpa.report.comparison import compare
from hashpa.report.pareto import best_within, fronts, pareto_front
from tests.report.test_frontier import clustered


def dominated_by_loops(quality, cost) -> list[bool]:
    """The reference: point i is off the front when some j is no worse in both and better in one."""
    return [any(quality[j] >= quality[i] and cost[j] <= cost[i] and (quality[j] > quality[i] or cost[j] < cost[i])
                for j in range(len(quality))) for i in range(len(quality))]


@pytest.mark.parametrize("seed", range(5))
def test_front_matches_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    quality, cost = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)  # few values: many ties
    expected = ~np.array(dominated_by_loops(quality, cost))
    np.testing.assert_array_equal(pareto_front(quality, cost), expected)


def test_front_by_hand():
    #                       a    b    c    d    e (equal to b)
    quality = np.array([0.5, 0.7, 0.6, 0.9, 0.7])
    cost = np.array([1.0, 2.0, 3.0, 8.0, 2.0])
    assert pareto_front(quality, cost).tolist() == [True, True, False, True, True]


def row(name, recall, nbytes, qps):
    return {"method": name, "recall@1": recall, "bytes_per_image": nbytes, "queries_per_second": qps}


ROWS = [row("float Flat", 0.88, 2048, 900), row("binary BFlat", 0.71, 8, 20000), row("PQ8", 0.86, 8, 3000),
        row("rerank PQ16 BFlat", 0.87, 24, 9000), row("PQ16", 0.85, 16, 2000)]


def test_fronts_of_bytes_and_speed():
    assert fronts(ROWS) == {"bytes": ["float Flat", "PQ8", "rerank PQ16 BFlat"],  # binary is as small as PQ8 and worse
                            "speed": ["float Flat", "binary BFlat", "rerank PQ16 BFlat"]}
    assert fronts([{k: v for k, v in r.items() if k != "recall@1"} for r in ROWS]) == {}  # unlabelled: no quality, no front


def test_best_within_a_budget_and_a_floor():
    assert best_within(ROWS, budget_bytes=24)["method"] == "rerank PQ16 BFlat"
    assert best_within(ROWS, budget_bytes=16)["method"] == "PQ8"  # PQ16 is bigger and worse
    assert best_within(ROWS, budget_bytes=16, min_qps=5000)["method"] == "binary BFlat"
    assert best_within(ROWS)["method"] == "float Flat"
    tied = [row("b", 0.8, 16, 100), row("a", 0.8, 8, 50), row("c", 0.8, 8, 70)]
    assert best_within(tied)["method"] == "c"  # equal Recall@1: fewer bytes, then more queries/s
    none = best_within(ROWS, budget_bytes=4)
    assert none["method"] is None and "binary BFlat (8.0 bytes per image)" in none["reason"]
    unlabelled = best_within([{k: v for k, v in r.items() if k != "recall@1"} for r in ROWS], budget_bytes=24)
    assert unlabelled["method"] is None and "no labelled queries" in unlabelled["reason"]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "8", True])
def test_limits_must_be_positive_numbers(bad):
    with pytest.raises(HashpaError, match="--budget-bytes must be a positive number"):
        best_within(ROWS, budget_bytes=bad)
    with pytest.raises(HashpaError, match="--min-qps must be a positive number"):
        best_within(ROWS, min_qps=bad)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    x, labels = clustered()
    store = Store(paths=[f"c{label:02d}/{i:04d}.png" for i, label in enumerate(labels)], labels=labels, class_names=[f"c{i:02d}" for i in range(12)],
                  embeddings=x, codes=np.packbits(x[:, :16] > 0, axis=1), sizes=np.zeros(len(x), np.int64), mtimes=np.zeros(len(x), np.int64),
                  attrs={"model_fingerprint": "synthetic"})
    target = tmp_path_factory.mktemp("pareto") / "idx"
    write_index_dir(target, store)
    return target


def test_compare_marks_the_fronts_and_names_the_best_within_the_budget(index_dir, tmp_path):
    report = compare(index_dir, frontier=True, budget_bytes=16, repeats=1, latency_queries=0, out=tmp_path)
    rows = report["methods"]
    fitting = [r for r in rows if r["bytes_per_image"] <= 16]
    best = max(fitting, key=lambda r: r["recall@1"])
    assert report["choice"]["method"] is not None
    assert next(r for r in rows if r["method"] == report["choice"]["method"])["recall@1"] == best["recall@1"]
    assert report["fronts"] == fronts(rows) and set(report["fronts"]["bytes"]) < {r["method"] for r in rows}
    table = (tmp_path / "compare.md").read_text()
    assert f"Best within 16 bytes per image: {report['choice']['method']}," in table and "| front |" in table
    assert json.loads((tmp_path / "compare.json").read_text())["choice"] == report["choice"]
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_compare_without_limits_has_fronts_but_no_choice(index_dir, tmp_path):
    report = compare(index_dir, repeats=1, latency_queries=0, out=tmp_path)
    assert "choice" not in report and report["fronts"]["bytes"]


def test_cli_refuses_a_bad_budget_before_measuring(index_dir, tmp_path):
    result = CliRunner().invoke(cli, ["compare", str(index_dir), "--budget-bytes", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit) and "--budget-bytes" in result.output
    assert not (tmp_path / "compare.json").exists()
    result = CliRunner().invoke(cli, ["compare", str(index_dir), "--min-qps", "1e12", "--repeats", "1", "--latency-queries", "0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Best within at least 1e+12 queries/s: none, no method fits" in result.output
