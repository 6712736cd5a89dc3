"""The benchmark scripts run end to end on tiny settings and write their reports."""

import json

import numpy as np
import pytest

from eval import bench_loss, bench_search, bench_train, flowers
from hashpa.metrics import recall_at_k
from tests.conftest import index_file, make_image_folder


def test_bench_search_tiny(tmp_path):
    bench_search.main(["--n", "3000", "--clusters", "20", "--queries", "20", "--bits", "64", "--threads", "1",
                       "--binary-indexes", "BHNSW32", "--latency-queries", "3", "--repeats", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "search.json").read_text())
    methods = {r["method"] for r in report["rows"]}
    assert {"float Flat", "binary BFlat", "binary BHNSW32"} <= methods
    rows = {r["method"]: r for r in report["rows"]}
    flat = rows["binary BFlat"]
    assert flat["recall_vs_exact"] == 1.0 and rows["float Flat"]["recall_vs_exact"] == 1.0  # each exact search against itself
    assert flat["hamming_per_second"] == pytest.approx(flat["queries_per_second"] * 3000)
    assert flat["fraction_of_popcount_limit"] == pytest.approx(flat["hamming_per_second"] / report["popcount_per_second_one_core"]["cache"])
    bflat_file = index_file(tmp_path / "index-64bit", "binary-BFlat.faiss")
    assert flat["bytes_per_vector"] == 8 and bflat_file.stat().st_size > 8 * 3000  # what hashpa compare counts: each code; the header once
    assert rows["rerank BFlat (shortlist 100)"]["bytes_per_vector"] == 8 + 512 * 4
    assert "| binary BFlat | 64 | 1 |" in (tmp_path / "search.md").read_text()
    asymmetric = next(r for r in report["rows"] if r["method"].startswith("asymmetric scan"))
    assert asymmetric["queries"] == 20 and asymmetric["bytes_per_vector"] == 8  # the codes; their quantiser is kept once
    # above chance (10 of 3,000): the cluster is found; the order inside an isotropic cluster mostly is not (64 PCA directions of 512)
    assert asymmetric["recall_vs_exact"] > 0.02 and asymmetric["queries_per_second"] > 0
    shortlisted = next(r for r in report["rows"] if r["method"].startswith("asymmetric, BFlat shortlist"))
    assert shortlisted["queries"] == 20 and 0.02 < shortlisted["recall_vs_exact"] <= 1


def test_bench_loss_tiny(tmp_path):
    bench_loss.main(["--device", "cpu", "--shapes", "16x10", "--repeats", "1", "--memory-batch", "8",
                     "--memory-classes", "2000", "--chunk", "500", "--dim", "16", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "loss.json").read_text())
    timing = report["timing"][0]
    assert timing["speedup_vs_pml"] == pytest.approx(timing["pml_ms"] / timing["hashpa_ms"])
    assert [m["proxy_chunk"] for m in report["memory"]] == [None, 500] and all(m["peak_bytes"] > 0 for m in report["memory"])
    assert f"| 16 | 10 | {timing['hashpa_ms']:.2f} |" in (tmp_path / "loss.md").read_text()


def test_bench_train_and_flowers_tiny(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=4, per_class=12)
    bench_train.main(["--data", str(data), "--backbone", "smallcnn", "--batch-size", "8", "--image-size", "32",
                      "--steps", "2", "--warmup-steps", "1", "--workers", "0", "--out", str(tmp_path / "train")])
    speeds = json.loads((tmp_path / "train" / "train.json").read_text())
    for run, key in (("hashpa", "hashpa_images_per_second"), ("reference", "reference_images_per_second")):  # the runs' own second epochs
        history = [json.loads(line) for line in (tmp_path / "train" / run / "history.jsonl").read_text().splitlines()]
        assert speeds[key] == history[1]["images_per_second"]
    assert speeds["hashpa_over_reference"] == pytest.approx(speeds["hashpa_images_per_second"] / speeds["reference_images_per_second"])
    reference = json.loads((tmp_path / "train" / "reference" / "config.json").read_text())
    assert (reference["amp"], reference["data_path"], reference["channels_last"]) == (False, "files", False)
    bench = tmp_path / "BENCH.md"
    bench.write_text("# Benchmarks\n\n<!-- flowers:cpu:start -->\nold\n<!-- flowers:cpu:end -->\n\nkept\n")
    flowers.main(["--data", str(data), "--backbone", "smallcnn", "--weights", "none", "--image-size", "32", "--epochs", "1",
                  "--batch-size", "8", "--bits", "16", "--convergence-bits", "16", "--losses", "proxy_anchor", "ms",
                  "--workers", "0", "--ablation", "--out", str(tmp_path / "flowers"), "--benchmarks", str(bench)])
    report = json.loads((tmp_path / "flowers" / "flowers.json").read_text())
    methods = [r["method"] for r in report["rows"]]
    assert "Proxy Anchor learned codes" in methods and "PCA-ITQ of the Proxy Anchor float embedding" in methods
    history = [json.loads(line) for line in (tmp_path / "flowers" / "runs" / "proxy_anchor-16bit" / "history.jsonl").read_text().splitlines()]
    learned = next(r for r in report["rows"] if r["key"] == "learned_codes")
    assert learned["recall@1"] == history[-1]["codes"]["recall@1"]  # the run's own last evaluation
    default_design = next(r for r in report["ablation"] if r["default"])
    assert default_design["learned_codes"] == learned["recall@1"] and default_design["pca_itq"] == next(
        r["recall@1"] for r in report["rows"] if r["key"] == "pca_itq" and r["method"].endswith("Proxy Anchor float embedding"))
    pca = next(r for r in report["rows"] if r.get("pca_dims"))
    assert pca["dim"] == 16 and 0 <= pca["recall@1"] <= 1 and "PCA float" in bench.read_text()
    assert set(report["convergence"]) == {"proxy_anchor", "ms"}
    text = bench.read_text()
    assert "old" not in text and "Proxy Anchor learned codes" in text and text.rstrip().endswith("kept")
    assert (tmp_path / "flowers" / "flowers-convergence.png").is_file()
    assert len(report["ablation"]) == len(flowers.ABLATION) == 8 and sum(r["default"] for r in report["ablation"]) == 1
    signs = json.loads(next((tmp_path / "flowers" / "runs").glob("ablation-no-hash-head-*/config.json")).read_text())
    assert (signs["model"]["hash_projection"], signs["model"]["dim"], signs["model"]["bits"]) == (False, 16, 16)
    assert "Hash-head designs" in text and "PCA-ITQ fitted to the test photos, asymmetric search of the Proxy Anchor float embedding" in methods


def test_bench_index_and_metrics_tiny(tmp_path, trained_run):
    from eval import bench_index, bench_metrics

    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    bench_index.main(["--data", str(data), "--run-dir", str(trained_run), "--workers", "0", "--batch-size", "4", "--decode", "pil", "device",
                      "--limit-batches", "2", "--out", str(tmp_path / "index")])
    report = json.loads((tmp_path / "index" / "index.json").read_text())
    assert [r["decode"] for r in report["rows"]] == ["pil", "device"] and [r["images"] for r in report["rows"]] == [12, 12]
    assert report["model_images_per_second"] == max(report["model_images_per_second_before_after"])
    for row in report["rows"]:  # each run indexed the folder as hashpa index does
        assert row["fraction_of_model_limit"] == pytest.approx(row["images_per_second"] / report["model_images_per_second"])
        assert json.loads((tmp_path / "index" / f"index-{row['decode']}-0-workers" / "index.json").read_text())["rows"] == 12
    bench_metrics.main(["--n", "500", "--dim", "16", "--out", str(tmp_path / "metrics")])
    rows = json.loads((tmp_path / "metrics" / "metrics.json").read_text())["rows"]
    assert [r["representation"] for r in rows] == ["float", "codes"]
    # the same synthetic data evaluated again: the figures are the evaluator's, for float and codes alike
    labels = np.arange(500) // 5
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((labels[-1] + 1, 16), dtype=np.float32)
    embeddings = centres[labels] + rng.standard_normal((500, 16), dtype=np.float32)
    assert rows[0]["recall@1"] == recall_at_k(embeddings, labels, ks=(1,))[1]


def test_flowers_protocol_line_names_the_split():
    report = {"train_images": 80, "test_images": 20, "train_classes": "a .. d", "test_classes": "a .. d", "training_seconds": 60.0,
              "rows": [], "convergence": {}, "ablation": [],
              "settings": {"split": "seen", "backbone": "smallcnn", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8}}
    assert "a fifth of every class" in flowers.markdown(report)
    report["settings"]["split"] = "half"
    assert "unseen classes a .. d" in flowers.markdown(report)


def test_hashing_baselines_tiny(tmp_path):
    from eval import hashing_baselines

    folder = make_image_folder(tmp_path / "photos", classes=4, per_class=10)
    arguments = ["--data", str(folder), "--bits", "16", "--epochs", "1", "--frozen-epochs", "1", "--backbone", "smallcnn",
                 "--weights", "none", "--image-size", "32", "--batch-size", "16", "--workers", "0", "--out", str(tmp_path / "out")]
    hashing_baselines.main(arguments)
    report = json.loads((tmp_path / "out" / "hashing-baselines.json").read_text())
    assert {r["design"] for r in report["rows"]} == {"hashpa", "pca_itq", "float", "csq", "orthohash", "hashnet", "dpsh", "greedyhash"}
    assert all(0 <= r["map@all"] <= 1 for r in report["rows"]) and "| 16 | GreedyHash |" in (tmp_path / "out" / "hashing-baselines.md").read_text()
    csq = json.loads((tmp_path / "out" / "runs" / "csq-16bit" / "config.json").read_text())
    assert (csq["method"], csq["warmup_epochs"], csq["epochs"]) == ("csq", 1, 1)  # the method itself, on the same schedule
    checkpoints = {path: path.stat().st_mtime_ns for path in (tmp_path / "out" / "runs").rglob("last.pt")}
    hashing_baselines.main(arguments)  # the finished runs are reused, not trained again
    assert json.loads((tmp_path / "out" / "hashing-baselines.json").read_text())["rows"] == report["rows"]
    assert {path: path.stat().st_mtime_ns for path in checkpoints} == checkpoints


def test_the_paper_frontier_scripts_tiny_share_their_runs(tmp_path):
    """The alpha x delta grid, several proxies per class and large batches on a tiny schedule; they share
    one folder of runs (the default cell is trained once), and their reports carry every cell."""
    from eval import large_batches, proxies_per_class, sensitivity

    folder = make_image_folder(tmp_path / "photos", classes=6, per_class=12)
    tiny = ["--data", str(folder), "--backbone", "smallcnn", "--weights", "none", "--image-size", "32", "--epochs", "1", "--batch-size", "16",
            "--workers", "0", "--out", str(tmp_path / "out")]
    sensitivity.main([*tiny, "--alpha", "16", "32", "--delta", "0", "0.1", "--bits", "16", "--plot", str(tmp_path / "heat.png")])
    report = json.loads((tmp_path / "out" / "sensitivity.json").read_text())
    assert report["finished"] and {(c["alpha"], c["delta"]) for c in report["cells"]} == {(16, 0), (16, 0.1), (32, 0), (32, 0.1)}
    assert all(0 <= c["float_recall@1"] <= 1 and c["after_code_stage"] for c in report["cells"]) and (tmp_path / "heat.png").stat().st_size > 0
    assert "| 32 | " in (tmp_path / "out" / "sensitivity.md").read_text()
    default_run = tmp_path / "out" / "runs" / "a32-d0.1-16bit" / "last.pt"
    stamp = default_run.stat().st_mtime_ns
    proxies_per_class.main([*tiny, "--k", "1", "2", "--splits", "half", "--bits", "16"])
    assert default_run.stat().st_mtime_ns == stamp  # reused, not trained again
    rows = json.loads((tmp_path / "out" / "proxies-per-class.json").read_text())["rows"]
    default_cell = next(c for c in report["cells"] if c["alpha"] == 32 and c["delta"] == 0.1)
    assert [r["k"] for r in rows] == [1, 2] and rows[0]["float"]["recall@1"] == default_cell["float_recall@1"]
    large_batches.main([*tiny, "--batches", "8", "16", "--chunk", "4", "--large", "32", "--steps", "1"])
    large = json.loads((tmp_path / "out" / "large-batches.json").read_text())
    assert [(r["batch"], r["chunk"]) for r in large["costs"]] == [(8, 0), (8, 4), (16, 0), (16, 4)] and all(r["peak_mb"] >= 0 for r in large["costs"])
    assert [(r["batch"], r["chunk"]) for r in large["quality"]] == [(16, 0), (32, 16)]
    with pytest.raises(SystemExit, match=r"trained with other settings \(seed: 0 in the run, 1 asked\)"):
        proxies_per_class.main([*tiny, "--k", "1", "--splits", "half", "--bits", "16", "--seed", "1"])


def test_cifar10_benchmark_tiny(tmp_path):
    from eval import cifar10

    root = tmp_path / "cifar"
    for part, per_class in (("train", 500), ("test", 110)):
        make_image_folder(root / part, classes=2, per_class=per_class, size=8, seed=len(part))
    arguments = ["--root", str(root), "--methods", "hashpa", "csq", "--variants", "--bits", "16", "--more-bits", "32", "--backbone", "smallcnn",
                 "--weights", "none", "--image-size", "16", "--epochs", "1", "--batch-size", "32", "--code-views", "0", "--workers", "0",
                 "--out", str(tmp_path / "out"), "--benchmarks", str(tmp_path / "page.md")]
    cifar10.main(arguments)
    report = json.loads((tmp_path / "out" / "cifar10.json").read_text())
    assert [(r["method"], r["bits"]) for r in report["rows"]] == [("hashpa", 16), ("csq", 16), ("hashpa", 32), ("csq", 32)]
    assert report["finished"] and all(0 <= r["map@all"] <= 1 and r["train_seconds"] >= 0 for r in report["rows"])
    page = (tmp_path / "page.md").read_text()
    assert "| 16 | CSQ |" in page and "Published figures" in page and f"at {root}" not in page
    checkpoints = {path: path.stat().st_mtime_ns for path in (tmp_path / "out" / "runs").rglob("last.pt")}
    cifar10.main(arguments)  # finished runs and evaluations are reused
    assert {path: path.stat().st_mtime_ns for path in checkpoints} == checkpoints


def test_milvus_benchmark_tiny(tmp_path):
    pytest.importorskip("milvus_lite")
    from eval import bench_milvus

    bench_milvus.main(["--rows", "600", "--dim", "16", "--queries", "10", "--shortlist", "50", "--out", str(tmp_path / "out"),
                       "--benchmarks", str(tmp_path / "page.md")])
    row = json.loads((tmp_path / "out" / "milvus.json").read_text())["rows"][0]
    assert row["rows"] == 600 and row["insert_rows_per_s"] > 0
    assert row["binary"]["agreement"] == 1.0 and row["float"]["agreement"] == 1.0 and row["rerank"]["agreement"] == 1.0
    assert "| 600 | 16 |" in (tmp_path / "page.md").read_text()
