"""The query path without torch: an index whose run has an ONNX export is searched, compared and
served by onnxruntime in a process where importing torch fails, with the answers of the torch path;
--engine picks the engine, and a missing, stale or damaged export is a clear error."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hashpa.export import export
from hashpa.indexdir import build_index
from hashpa.search.index import open_index
from tests.conftest import make_image_folder
from tests.test_bad_inputs import hashpa as run_cli

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """(index directory, its photos, a folder of query photos) for the trained run, exported."""
    base = tmp_path_factory.mktemp("engines")
    run = base / "run"
    subprocess.run(["cp", "-r", str(trained_run), str(run)], check=True)
    export(run)
    photos = make_image_folder(base / "photos", classes=3, per_class=8, size=40)
    queries = make_image_folder(base / "queries", classes=3, per_class=3, size=52, seed=7)
    build_index(photos, run, base / "index", workers=0)
    return base / "index", photos, queries, run


def without_torch(tmp_path: Path, *args: str, script: str | None = None) -> subprocess.CompletedProcess:
    """hashpa ARGS (or a Python `script`) in a fresh process where importing torch fails."""
    site = tmp_path / "no-torch"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import sys\nfor name in ('torch', 'torchvision', 'timm'):\n    sys.modules[name] = None\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [sys.executable, "-c", textwrap.dedent(script)] if script else [sys.executable, "-m", "hashpa.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def hits(answer: list[dict]) -> list[list[tuple[str, float]]]:
    return [[(h["path"], h["score"]) for h in result["hits"]] for result in answer]


def assert_same_answers(onnx: list[dict], torch_path: list[dict]) -> None:
    for ours, theirs in zip(hits(onnx), hits(torch_path), strict=True):
        assert [p for p, _ in ours] == [p for p, _ in theirs]
        assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-4)


def test_the_search_command_runs_without_torch_and_answers_as_torch_does(exported, tmp_path):
    index, _, queries, _ = exported
    for mode in ("float", "binary", "rerank"):
        done = without_torch(tmp_path, "search", str(index), str(queries), "-k", "5", "--mode", mode, "--json")
        assert done.returncode == 0, done.stderr
        reference = json.loads(run_cli("search", index, queries, "-k", "5", "--mode", mode, "--json", "--engine", "torch").succeeded().stdout)
        assert_same_answers(json.loads(done.stdout), reference)
    refused = without_torch(tmp_path, "search", str(index), str(queries), "--engine", "torch")
    assert refused.returncode != 0 and "PyTorch is not installed" in refused.stderr and "Traceback" not in refused.stderr


def test_compare_and_serve_run_without_torch(exported, tmp_path):
    index, photos, queries, _ = exported
    done = without_torch(tmp_path, "compare", str(index), "--queries", str(queries), "--out", str(tmp_path / "report"), "--latency-queries", "0",
                         "--repeats", "1", "--json")
    assert done.returncode == 0, done.stderr
    onnx = json.loads(done.stdout)
    reference = json.loads(run_cli("compare", index, "--queries", queries, "--out", tmp_path / "reference", "--latency-queries", "0", "--repeats", "1",
                                   "--json", "--engine", "torch").succeeded().stdout)
    assert [round(r["recall@1"], 6) for r in onnx["methods"]] == [round(r["recall@1"], 6) for r in reference["methods"]]
    query = next(queries.rglob("*.png"))
    served = without_torch(tmp_path, script=f"""
        import json
        from starlette.testclient import TestClient
        from hashpa.serve.app import create_app
        client = TestClient(create_app([{str(index)!r}]), base_url="http://localhost")
        answer = client.post("/search", data={{"k": "3"}}, files={{"image": ("q.png", open({str(query)!r}, "rb").read())}})
        print(json.dumps(answer.json()))
        import sys
        assert "torch" not in {{name for name, module in sys.modules.items() if module is not None}}
    """)
    assert served.returncode == 0, served.stderr
    answer = json.loads(served.stdout.splitlines()[-1])
    with open_index(index, engine="torch") as ix:
        expected = ix.search(query, k=3)
    assert [h["row"] for h in answer["results"]["float"]["hits"]] == expected.ids[0].tolist()


def test_every_input_kind_embeds_alike_in_both_engines(exported):
    index, _, queries, _ = exported
    path = next(queries.rglob("*.png"))
    picture = Image.open(path).convert("RGB")
    pixels = np.array(picture)
    inputs = [path, picture, pixels, torch.from_numpy(pixels).permute(2, 0, 1), torch.from_numpy(pixels).permute(2, 0, 1).float() / 255]
    with open_index(index, engine="onnx") as onnx, open_index(index, engine="torch") as reference:
        expected, expected_codes = reference.embed(path)
        for given in inputs:
            embeddings, codes = onnx.embed(given)
            assert np.abs(embeddings - expected).max() < 1e-4, type(given)
            assert (codes == expected_codes).all() or np.unpackbits(codes ^ expected_codes).sum() <= 1


def test_auto_takes_a_matching_export_and_passes_over_a_stale_one(exported, tmp_path, caplog):
    from hashpa.exported import ExportedModel

    index, _, _, run = exported
    with open_index(index) as ix:
        assert isinstance(ix.model(), ExportedModel)
    card = run / "model.onnx.json"
    saved = card.read_text()
    try:
        card.write_text(saved.replace(json.loads(saved)["fingerprint"], "0123456789abcdef"))
        with open_index(index) as ix:
            assert not isinstance(ix.model(), ExportedModel)
        assert "another model" in caplog.text
        run_cli("search", index, next(index.parent.joinpath("queries").rglob("*.png")), "--engine", "onnx").failed_with(
            "an export of another model", "hashpa export")
        card.write_text('{"format": 1, "fingerprint": 3')
        run_cli("search", index, next(index.parent.joinpath("queries").rglob("*.png")), "--engine", "onnx").failed_with("damaged", "hashpa export")
        card.write_text(saved.replace('"center_crop": ', '"center_crop": -'))
        run_cli("search", index, next(index.parent.joinpath("queries").rglob("*.png")), "--engine", "onnx").failed_with(
            "not a hashpa export card", "positive whole numbers")
    finally:
        card.write_text(saved)


def test_an_index_without_an_export_asks_for_one(trained_run, tmp_path):
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=4, size=32)
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(trained_run), str(run)], check=True)
    (run / "model.onnx").unlink(missing_ok=True)
    build_index(photos, run, tmp_path / "index", workers=0)
    query = next(photos.rglob("*.png"))
    run_cli("search", tmp_path / "index", query, "--engine", "onnx").failed_with("no ONNX export", "hashpa export")
    refused = without_torch(tmp_path, "search", str(tmp_path / "index"), str(query))
    assert refused.returncode != 0 and "PyTorch is not installed" in refused.stderr and "hashpa export" in refused.stderr
    run_cli("search", tmp_path / "index", query, "--engine", "gpu").failed_with("'gpu' is not one of")
