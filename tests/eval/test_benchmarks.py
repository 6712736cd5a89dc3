"""The benchmark scripts run end to end on tiny settings and write their reports."""

import json

import pytest

from eval import bench_loss, bench_search, bench_train, flowers
from tests.conftest import make_image_folder


def test_bench_search_tiny(tmp_path):
    bench_search.main(["--n", "3000", "--clusters", "20", "--queries", "20", "--bits", "64", "--threads", "1",
                       "--binary-indexes", "BHNSW32", "--latency-queries", "3", "--repeats", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "search.json").read_text())
    methods = {r["method"] for r in report["rows"]}
    assert {"float Flat", "binary BFlat", "binary BHNSW32"} <= methods
    flat = next(r for r in report["rows"] if r["method"] == "binary BFlat")
    assert flat["recall_vs_exact"] == 1.0 and 0 < flat["fraction_of_popcount_limit"]
    assert "| binary BFlat | 64 | 1 |" in (tmp_path / "search.md").read_text()
    asymmetric = next(r for r in report["rows"] if r["method"].startswith("asymmetric scan"))
    quantiser = (512 + 512 * 64) * 4  # float32 mean and projection
    assert asymmetric["queries"] == 20 and asymmetric["bytes_per_vector"] == pytest.approx(8 + quantiser / 3000)
    # above chance (10 of 3,000): the cluster is found; the order inside an isotropic cluster mostly is not (64 PCA directions of 512)
    assert asymmetric["recall_vs_exact"] > 0.02 and asymmetric["queries_per_second"] > 0
    shortlisted = next(r for r in report["rows"] if r["method"].startswith("asymmetric, BFlat shortlist"))
    assert shortlisted["queries"] == 20 and 0.02 < shortlisted["recall_vs_exact"] <= 1


def test_bench_loss_tiny(tmp_path):
    bench_loss.main(["--device", "cpu", "--shapes", "16x10", "--repeats", "1", "--memory-batch", "8",
                     "--memory-classes", "2000", "--chunk", "500", "--dim", "16", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "loss.json").read_text())
    assert report["timing"][0]["hashpa_ms"] > 0 and report["timing"][0]["pml_ms"] > 0
    assert [m["proxy_chunk"] for m in report["memory"]] == [None, 500]


def test_bench_train_and_flowers_tiny(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=4, per_class=12)
    bench_train.main(["--data", str(data), "--backbone", "smallcnn", "--batch-size", "8", "--image-size", "32",
                      "--steps", "2", "--warmup-steps", "1", "--workers", "0", "--out", str(tmp_path / "train")])
    assert json.loads((tmp_path / "train" / "train.json").read_text())["hashpa_images_per_second"] > 0
    bench = tmp_path / "BENCH.md"
    bench.write_text("# Benchmarks\n\n<!-- flowers:cpu:start -->\nold\n<!-- flowers:cpu:end -->\n\nkept\n")
    flowers.main(["--data", str(data), "--backbone", "smallcnn", "--weights", "none", "--image-size", "32", "--epochs", "1",
                  "--batch-size", "8", "--bits", "16", "--convergence-bits", "16", "--losses", "proxy_anchor", "ms",
                  "--workers", "0", "--ablation", "--out", str(tmp_path / "flowers"), "--benchmarks", str(bench)])
    report = json.loads((tmp_path / "flowers" / "flowers.json").read_text())
    methods = [r["method"] for r in report["rows"]]
    assert "Proxy Anchor learned codes" in methods and "PCA-ITQ of the Proxy Anchor float embedding" in methods
    pca = next(r for r in report["rows"] if r.get("pca_dims"))
    assert pca["dim"] == 16 and 0 <= pca["recall@1"] <= 1 and "PCA float" in bench.read_text()
    assert set(report["convergence"]) == {"proxy_anchor", "ms"}
    text = bench.read_text()
    assert "old" not in text and "Proxy Anchor learned codes" in text and text.rstrip().endswith("kept")
    assert (tmp_path / "flowers" / "flowers-convergence.png").is_file()
    assert len(report["ablation"]) == 5 and sum(r["default"] for r in report["ablation"]) == 1
    assert "Hash-head designs" in text and "PCA-ITQ fitted to the test photos, asymmetric search of the Proxy Anchor float embedding" in methods


def test_bench_index_and_metrics_tiny(tmp_path, trained_run):
    from eval import bench_index, bench_metrics

    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    bench_index.main(["--data", str(data), "--model", str(trained_run), "--workers", "0", "--batch-size", "4", "--decode", "pil", "device",
                      "--limit-batches", "2", "--out", str(tmp_path / "index")])
    report = json.loads((tmp_path / "index" / "index.json").read_text())
    assert [r["decode"] for r in report["rows"]] == ["pil", "device"] and report["rows"][1]["images"] == 12 and report["model_images_per_second"] > 0
    bench_metrics.main(["--n", "500", "--dim", "16", "--out", str(tmp_path / "metrics")])
    rows = json.loads((tmp_path / "metrics" / "metrics.json").read_text())["rows"]
    assert [r["representation"] for r in rows] == ["float", "codes"] and 0 < rows[1]["recall@1"] <= rows[0]["recall@1"] <= 1


def test_flowers_protocol_line_names_the_split():
    report = {"train_images": 80, "test_images": 20, "train_classes": "a .. d", "test_classes": "a .. d", "training_seconds": 60.0,
              "rows": [], "convergence": {}, "ablation": [], "sensitivity": [],
              "settings": {"split": "seen", "backbone": "smallcnn", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8}}
    assert "a fifth of every class" in flowers.markdown(report)
    report["settings"]["split"] = "half"
    assert "unseen classes a .. d" in flowers.markdown(report)
