"""hashpa eval: a trained run re-evaluated on its own split, on other data, with baselines."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hashpa.cli.main import cli
from hashpa.embed import Embedded
from hashpa.errors import HashpaError
from hashpa.metrics.retrieval import model_scores
from hashpa.report.evaluation import evaluate
from hashpa.runs import RunDir
from tests.conftest import make_image_folder


def best_record(run_dir, report) -> dict:
    stage = "codes" if report["after_code_stage"] else ("start" if report["epoch"] == 0 else None)  # epoch 0: the untrained start
    return next(r for r in RunDir(run_dir).read_history() if r["epoch"] == report["epoch"] and r.get("stage") == stage and "float" in r)


def test_the_runs_own_split_gives_the_figures_training_logged(trained_run):
    report = evaluate(trained_run, workers=0)
    logged = best_record(trained_run, report)
    float_row, codes_row = report["rows"]
    for row, name in ((float_row, "float"), (codes_row, "codes")):
        for key in ("recall@1", "recall@2", "map@r"):
            assert row[key] == pytest.approx(logged[name][key], abs=1e-9), (name, key)
    assert codes_row["expected_recall@1"] == pytest.approx(logged["codes"]["expected_recall@1"])
    assert "expected_recall@1" not in float_row and codes_row["bits"] == 16 and float_row["dim"] == 16


def test_baselines_and_written_report(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "other", classes=6, per_class=10, seed=3)
    report = evaluate(trained_run, checkpoint="last", data=folder, split="half", baselines=True, workers=0, out=tmp_path / "out")
    assert [row["method"] for row in report["rows"]] == [
        "float embedding", "the model's codes", "LSH of the float embedding", "PCA-ITQ of the float embedding",
        "PCA-ITQ fitted to the test photos of the float embedding", "PCA-ITQ fitted to the test photos, asymmetric search of the float embedding",
    ]
    assert all(0 <= row["recall@1"] <= row["recall@2"] <= 1 for row in report["rows"])
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["rows"] == report["rows"]
    table = (tmp_path / "out" / "eval.md").read_text()
    assert "| PCA-ITQ of the float embedding | 16 bits |" in table and "(last: epoch" in table and "hashpa index --codes itq" in table


def test_too_few_test_photos_leave_out_the_codes_fitted_to_them(trained_run, caplog):
    report = evaluate(trained_run, baselines=True, workers=0)
    assert report["queries"] <= 16 and len(report["rows"]) == 4
    assert "no PCA-ITQ fitted to the test photos rows" in caplog.text


def test_other_data_replaces_the_runs_split(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "other", classes=6, per_class=10, seed=3)
    report = evaluate(trained_run, data=folder, split="half", workers=0)
    assert report["queries"] == 30 and report["database"] == 29
    assert "first 3 of 6 classes train" in report["split"]


def test_gallery_queries_search_the_gallery_only():
    # float: query 0's nearest is gallery item 1 (its label); query 1 ranks items 0, 1 (other label), then 2.
    # codes: query 0 is at distance 0 from item 1; query 1 at 0 from item 0 (other label), 4 from item 2 (its label).
    queries = Embedded(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([[0b11110000], [0b00001111]], np.uint8), np.array([0, 1]))
    gallery = Embedded(np.array([[0.6, 0.8], [0.8, 0.6], [-1.0, 0.0]], np.float32),
                       np.array([[0b00001111], [0b11110000], [0b11111111]], np.uint8), np.array([0, 0, 1]))
    scores = model_scores(queries, gallery, ks=(1, 2))
    assert scores["float"]["recall@1"] == 0.5 and scores["float"]["recall@2"] == 0.5
    assert scores["codes"]["recall@1"] == 0.5 and scores["codes"]["recall@2"] == 1.0


def test_errors_are_clear(trained_run, tmp_path):
    with pytest.raises(HashpaError, match="not a hashpa run directory"):
        evaluate(tmp_path)
    result = CliRunner().invoke(cli, ["eval", str(trained_run), "--train-dir", str(tmp_path)])
    assert result.exit_code == 2 and "give both --train-dir and --test-dir" in result.output


def test_the_command_prints_the_table(trained_run):
    result = CliRunner().invoke(cli, ["eval", str(trained_run), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "| float embedding | 16-d |" in result.output and "| the model's codes | 16 bits |" in result.output
