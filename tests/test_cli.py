"""The command line end to end on a generated folder: train -> index -> search / compare / info / export."""

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hashpa.cli.main import cli
from hashpa.codes import bit_statistics
from hashpa.indexdir import read_store
from tests.conftest import index_file, make_image_folder

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
    indexed = run("index", folder, "--run-dir", base / "run", "--out", base / "idx", "--workers", "0", "--binary-index", "BFlat", "--binary-index", "BHNSW32")
    assert indexed.exit_code == 0, indexed.output
    return base, folder, trained.output, indexed.output


def test_train_prints_the_best_records_figures(workspace):
    base, _, output, _ = workspace
    assert f"Run directory: {base / 'run'}" in output
    history = [json.loads(line) for line in (base / "run" / "history.jsonl").read_text().splitlines()]
    best = torch.load(base / "run" / "last.pt", weights_only=True)["best"]
    record = next(r for r in history if r["epoch"] == best["epoch"] and r.get("stage") == best.get("stage"))
    for name in ("float", "codes"):
        line = next(line for line in output.splitlines() if line.strip().startswith(name + " "))
        printed = [None if v == "-" else float(v) for v in line.split()[1:]]  # "-": a K the small test split cannot fill
        expected = [record[name].get(f"recall@{k}") for k in (1, 2, 4, 8)] + [record[name]["map@r"]]
        assert [p is None for p in printed] == [e is None for e in expected], name
        assert [p for p in printed if p is not None] == pytest.approx([e for e in expected if e is not None], abs=5e-5), name


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
    hits = json.loads(as_json.stdout)[0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    if mode == "binary":  # the query's own code is at distance 0 (identical codes are ordered by row)
        assert hits[0]["score"] == 0
    else:
        assert hits[0]["path"] == "class_02/img_003.png"  # the query itself is in the index
    assert len(json.loads(as_json.stdout)[0]["code"]) == 16


def test_search_grid_and_folder_queries(workspace):
    base, folder, _, _ = workspace
    grid = base / "grid.png"
    result = run("search", base / "idx", folder / "class_01", "-k", 4, "--grid", grid, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 12
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
    assert bflat["bytes_per_image"] == report["bits"] / 8  # each image adds its code; the file's header is kept once
    assert methods["binary BHNSW32"]["bytes_per_image"] == pytest.approx(methods["binary BHNSW32"]["index_bytes"] / 48)  # graph links grow too
    assert bflat["index_bytes"] == (index_file(base / "idx", "binary-BFlat.faiss")).stat().st_size
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
    store = read_store(index_file(base / "idx", "store.h5"))
    entropy = float(info.output.split("mean entropy ")[1].split()[0])
    assert entropy == pytest.approx(bit_statistics(store.codes)["mean_entropy"], abs=5e-4)
    assert run("export-codes", base / "idx", base / "codes.txt").exit_code == 0
    lines = (base / "codes.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == store.paths
    assert [line.split("\t")[1] for line in lines] == ["".join(f"{b:08b}" for b in code) for code in store.codes]
    assert run("export-codes", base / "idx", base / "codes.bin", "--format", "binary").exit_code == 0
    np.testing.assert_array_equal(np.frombuffer((base / "codes.bin").read_bytes(), dtype=np.uint8).reshape(48, 2), store.codes)


def test_json_output_of_index_info_compare_and_eval(workspace, tmp_path):
    base, folder, _, _ = workspace
    indexed = run("index", folder, "--run-dir", base / "run", "--out", tmp_path / "idx", "--workers", "0", "--json")
    assert indexed.exit_code == 0, indexed.output
    summary = json.loads(indexed.stdout)
    assert (summary["rows"], summary["embedded"], list(summary["indexes"])) == (48, 48, ["float:Flat", "binary:BFlat"])
    facts = json.loads(run("info", tmp_path / "idx", "--json").stdout)
    assert facts["rows"] == 48 and facts["bits"] == 16 and facts["store_id"] == read_store(index_file(tmp_path / "idx", "store.h5")).attrs["store_id"]
    compared = json.loads(run("compare", tmp_path / "idx", "--latency-queries", 2, "--repeats", 1, "--json").stdout)
    assert [m["method"] for m in compared["methods"]] == ["float Flat", "binary BFlat", "rerank BFlat"]
    assert compared == json.loads((tmp_path / "idx" / "compare.json").read_text()) | {"command": compared["command"]}
    evaluated = json.loads(run("eval", base / "run", "--workers", 0, "--json").stdout)
    assert [r["key"] for r in evaluated["rows"]] == ["float", "codes"]


def test_settings_from_a_config_file_with_command_line_overrides(workspace, tmp_path):
    _, folder, _, _ = workspace
    (tmp_path / "settings.toml").write_text(f'''data = "{folder}"
split = "seen"
epochs = 1
batch_size = 16
workers = 0
warmup_epochs = 0
code_epochs = 0
[model]
backbone = "smallcnn"
weights = "none"
dim = 16
bits = 32
''')
    trained = run("train", "--config", tmp_path / "settings.toml", "--bits", 16, "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["bits"] == 16 and saved["model"]["dim"] == 16 and saved["epochs"] == 1 and saved["data"] == str(folder)
    (tmp_path / "bad.yaml").write_text("epochs: three\n")
    bad = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and "epochs (--epochs) must be int, got 'three'" in bad.output and "Traceback" not in bad.output


def test_an_index_with_codes_fitted_to_the_folder_searches_and_compares(workspace, tmp_path):
    base, folder, _, _ = workspace
    indexed = run("index", folder, "--run-dir", base / "run", "--out", tmp_path / "idx", "--workers", "0", "--codes", "itq")
    assert indexed.exit_code == 0, indexed.output
    query = folder / "class_03" / "img_007.png"
    hits = json.loads(run("search", tmp_path / "idx", query, "-k", 2, "--mode", "binary", "--json").stdout)[0]["hits"]
    assert hits[0]["score"] == 0  # the query's fitted code is in the index
    asymmetric = json.loads(run("search", tmp_path / "idx", query, "-k", 2, "--mode", "asymmetric", "--json").stdout)[0]["hits"]
    assert asymmetric[0]["score"] >= asymmetric[1]["score"]
    compared = run("compare", tmp_path / "idx", "--latency-queries", 2, "--repeats", 1)
    assert compared.exit_code == 0 and "PCA-ITQ fitted to this database" in compared.output, compared.output
    assert "| asymmetric scan |" in compared.output and "| asymmetric BFlat (shortlist 100) |" in compared.output
    shortlisted = run("search", tmp_path / "idx", query, "-k", 2, "--mode", "asymmetric", "--shortlist", 5, "--json")
    assert json.loads(shortlisted.stdout)[0]["hits"][0]["path"] == asymmetric[0]["path"]
    report = json.loads((tmp_path / "idx" / "compare.json").read_text())
    assert report["code_source"] == "itq"
    memory = {row["method"]: row["index_bytes"] for row in report["methods"]}
    assert memory["asymmetric BFlat"] == memory["asymmetric scan"] + (index_file(tmp_path / "idx", "binary-BFlat.faiss")).stat().st_size
    assert "codes from PCA-ITQ fitted to this database" in run("info", tmp_path / "idx").output


def test_queries_embedded_by_another_model_are_refused(workspace, tmp_path):
    base, folder, _, _ = workspace
    other = run("train", "--data", folder, "--out", tmp_path / "other", *TINY[:-6], "--epochs", "1", "--seed", "7", "--workers", "0")
    assert other.exit_code == 0, other.output
    result = run("search", base / "idx", folder / "class_00" / "img_000.png", "--run-dir", tmp_path / "other")
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


def test_grids_find_the_images_after_the_folder_and_index_move_together(workspace, tmp_path):
    base, folder, _, _ = workspace
    project = tmp_path / "project"
    shutil.copytree(folder, project / "photos")
    assert run("index", project / "photos", "--run-dir", base / "run", "--out", project / "idx", "--workers", "0").exit_code == 0
    moved = tmp_path / "elsewhere"
    shutil.move(str(project), str(moved))
    query = moved / "photos" / "class_01" / "img_002.png"
    result = run("search", moved / "idx", query, "-k", 3, "--grid", tmp_path / "grid.png", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)[0]
    assert hits["label"] == "class_01" and hits["hits"][0]["path"] == "class_01/img_002.png"  # the query's class, from inside the moved folder
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    shutil.rmtree(moved / "photos")
    gone = CliRunner().invoke(cli, ["search", str(moved / "idx"), str(folder / "class_00" / "img_000.png"), "--grid", str(tmp_path / "g2.png")])
    assert gone.exit_code == 2 and "no longer at" in gone.output and "Traceback" not in gone.output
