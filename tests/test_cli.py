"""The command line end to end on a generated folder: train -> index -> search / compare / info / export."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hashpa.cli.main import cli
from tests.conftest import make_image_folder

TINY = ["--backbone", "smallcnn", "--weights", "none", "--dim", "16", "--bits", "16", "--split", "seen",
        "--epochs", "2", "--batch-size", "16", "--lr", "0.003", "--workers", "0", "--warmup-epochs", "0"]


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    folder = make_image_folder(base / "images", classes=4, per_class=12)
    trained = run("train", "--data", folder, "--out", base / "run", *TINY)
    assert trained.exit_code == 0, trained.output
    indexed = run("index", folder, "--model", base / "run", "--out", base / "idx", "--workers", "0", "--binary-index", "BFlat", "--binary-index", "BHNSW32")
    assert indexed.exit_code == 0, indexed.output
    return base, folder, trained.output, indexed.output


def test_train_prints_a_summary(workspace):
    base, _, output, _ = workspace
    assert f"Run directory: {base / 'run'}" in output
    assert "float" in output and "codes" in output and "Recall@1" in output


def test_index_reports_what_it_built(workspace):
    _, _, _, output = workspace
    assert "Indexed 48 images" in output and "binary:BHNSW32" in output


@pytest.mark.parametrize("mode", ["float", "binary", "rerank"])
def test_search_text_and_json(workspace, mode):
    base, folder, _, _ = workspace
    query = folder / "class_02" / "img_003.png"
    text = run("search", base / "idx", query, "-k", 3, "--mode", mode, "--show-codes")
    assert text.exit_code == 0, text.output
    assert f"query {query}" in text.output and "code " in text.output
    as_json = run("search", base / "idx", query, "-k", 3, "--mode", mode, "--json")
    hits = json.loads(as_json.output)[0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    if mode == "binary":  # the query's own code is at distance 0 (identical codes are ordered by row)
        assert hits[0]["score"] == 0
    else:
        assert hits[0]["path"] == "class_02/img_003.png"  # the query itself is in the index
    assert len(json.loads(as_json.output)[0]["code"]) == 16


def test_search_grid_and_folder_queries(workspace):
    base, folder, _, _ = workspace
    grid = base / "grid.png"
    result = run("search", base / "idx", folder / "class_01", "-k", 4, "--grid", grid, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 12
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_writes_table_json_and_plot(workspace):
    base, _, _, _ = workspace
    result = run("compare", base / "idx", "--latency-queries", 5, "--repeats", 1, "--out", base / "cmp")
    assert result.exit_code == 0, result.output
    assert "| float Flat |" in result.output and "| binary BFlat |" in result.output and "rerank BFlat" in result.output
    report = json.loads((base / "cmp" / "compare.json").read_text())
    methods = {m["method"]: m for m in report["methods"]}
    assert set(methods) == {"float Flat", "binary BFlat", "binary BHNSW32", "rerank BFlat"}
    for m in methods.values():
        assert 0 <= m["recall@1"] <= m["recall@8"] <= 1 and m["queries_per_second"] > 0
    bflat = methods["binary BFlat"]
    assert bflat["bytes_per_image"] == pytest.approx(bflat["index_bytes"] / 48)
    assert bflat["index_bytes"] == (base / "idx" / "binary-BFlat.faiss").stat().st_size
    assert report["machine"]["cpu_cores"] >= 1 and report["queries"] == 48
    assert (base / "cmp" / "compare.png").stat().st_size > 1000


def test_compare_with_a_query_folder(workspace, tmp_path):
    base, _, _, _ = workspace
    queries = make_image_folder(tmp_path / "queries", classes=4, per_class=2, seed=5)
    result = run("compare", base / "idx", "--queries", queries, "--latency-queries", 2, "--repeats", 1, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "compare.json").read_text())["labelled_queries"] == 8


def test_info_and_export_codes(workspace):
    base, _, _, _ = workspace
    info = run("info", base / "idx")
    assert info.exit_code == 0 and "16-bit codes" in info.output and "mean entropy" in info.output
    run("export-codes", base / "idx", base / "codes.txt")
    lines = (base / "codes.txt").read_text().splitlines()
    assert len(lines) == 48 and lines[0].split("\t")[0] == "class_00/img_000.png" and len(lines[0].split("\t")[1]) == 16
    run("export-codes", base / "idx", base / "codes.bin", "--format", "binary")
    raw = np.frombuffer((base / "codes.bin").read_bytes(), dtype=np.uint8).reshape(48, 2)
    assert "".join(f"{b:08b}" for b in raw[0]) == lines[0].split("\t")[1]


def test_an_index_with_codes_fitted_to_the_folder_searches_and_compares(workspace, tmp_path):
    base, folder, _, _ = workspace
    indexed = run("index", folder, "--model", base / "run", "--out", tmp_path / "idx", "--workers", "0", "--codes", "itq")
    assert indexed.exit_code == 0, indexed.output
    query = folder / "class_03" / "img_007.png"
    hits = json.loads(run("search", tmp_path / "idx", query, "-k", 2, "--mode", "binary", "--json").output)[0]["hits"]
    assert hits[0]["score"] == 0  # the query's fitted code is in the index
    asymmetric = json.loads(run("search", tmp_path / "idx", query, "-k", 2, "--mode", "asymmetric", "--json").output)[0]["hits"]
    assert asymmetric[0]["score"] >= asymmetric[1]["score"]
    compared = run("compare", tmp_path / "idx", "--latency-queries", 2, "--repeats", 1)
    assert compared.exit_code == 0 and "PCA-ITQ fitted to this database" in compared.output, compared.output
    assert "| asymmetric scan |" in compared.output and "| asymmetric BFlat (shortlist 100) |" in compared.output
    shortlisted = run("search", tmp_path / "idx", query, "-k", 2, "--mode", "asymmetric", "--shortlist", 5, "--json")
    assert json.loads(shortlisted.output)[0]["hits"][0]["path"] == asymmetric[0]["path"]
    report = json.loads((tmp_path / "idx" / "compare.json").read_text())
    assert report["code_source"] == "itq"
    memory = {row["method"]: row["index_bytes"] for row in report["methods"]}
    assert memory["asymmetric BFlat"] == memory["asymmetric scan"] + (tmp_path / "idx" / "binary-BFlat.faiss").stat().st_size
    assert "codes from PCA-ITQ fitted to this database" in run("info", tmp_path / "idx").output


def test_queries_embedded_by_another_model_are_refused(workspace, tmp_path):
    base, folder, _, _ = workspace
    other = run("train", "--data", folder, "--out", tmp_path / "other", *TINY[:-6], "--epochs", "1", "--seed", "7", "--workers", "0")
    assert other.exit_code == 0, other.output
    result = run("search", base / "idx", folder / "class_00" / "img_000.png", "--model", tmp_path / "other")
    assert result.exit_code == 2
    assert "was built with model" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--bits", "63"], "multiple of 8"),
        (["train", "--data", "/nonexistent/folder"], "image folder not found"),
        (["train", "--dataset", "cub"], "needs --root"),
        (["search", "/", "x.png"], "not a hashpa index"),
    ],
)
def test_user_mistakes_exit_2_with_a_message(args, message, tmp_path):
    if args[0] == "search":
        (tmp_path / "x.png").write_bytes(b"")
        args = ["search", str(tmp_path), str(tmp_path / "x.png")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
