"""torchrun on the CPU (gloo, 2 processes): one step equals one process's, training and indexing end to end."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributed.run import get_args_parser

from hashpa.cli.main import cli
from hashpa.indexdir import read_store
from tests.conftest import index_file, make_image_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "smallcnn", "--weights", "none", "--dim", "16", "--bits", "16", "--split", "seen", "--batch-size", "16",
        "--lr", "0.003", "--workers", "0", "--warmup-epochs", "0", "--code-epochs", "3", "--freeze-bn", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def hashpa(*args, processes: int = 2) -> subprocess.CompletedProcess:
    return torchrun("-m", "hashpa.cli", *args, processes=processes)


def test_every_option_of_every_command_reaches_hashpa_through_torchrun():
    """torchrun's own parser takes an unambiguous prefix of its options anywhere on the line (--run of --run-path)."""
    launcher = get_args_parser()
    for name, command in cli.commands.items():
        for option in (o for param in command.params for o in getattr(param, "opts", []) if o.startswith("--")):
            line = ["--nproc-per-node", "2", "--no-python", "hashpa", name, option, "VALUE"]
            try:
                parsed = launcher.parse_args(line)
            except SystemExit:
                pytest.fail(f"torchrun refuses hashpa {name} {option}: it takes it for one of its own options")
            assert parsed.training_script_args == [name, option, "VALUE"], (name, option)


@pytest.mark.parametrize("chunk", [0, 3], ids=["ddp", "chunks"])
def test_one_step_on_two_ranks_equals_one_process_with_the_whole_batch(tmp_path, chunk):
    subprocess.run([sys.executable, str(ROOT / "tests/distributed/one_step.py"), str(tmp_path / "one.pt")], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    torchrun(ROOT / "tests/distributed/one_step.py", tmp_path / "two.pt", *([chunk] if chunk else []))
    one, two = torch.load(tmp_path / "one.pt", weights_only=True), torch.load(tmp_path / "two.pt", weights_only=True)
    torch.testing.assert_close(two["loss"], one["loss"], rtol=1e-5, atol=1e-6)
    assert set(one["parts"]) == {"float", "codes", "quantization", "distillation", "decorrelation", "total"}  # Proxy Anchor and every code term
    for name in one["parts"]:
        torch.testing.assert_close(two["parts"][name], one["parts"][name], rtol=1e-5, atol=1e-6, msg=name)
    assert {"metric.proxies", "code_metric.proxies", "hash_head.linear.weight", "embedding.weight"} <= set(one["updates"])
    for name, update in one["updates"].items():  # the same step, to float tolerance: gradients of the global batch, proxies included
        scale = float(update.abs().max())
        torch.testing.assert_close(two["updates"][name], update, rtol=0, atol=max(1e-3 * scale, 1e-6), msg=name)  # a bias before BatchNorm: ~0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    folder = make_image_folder(base / "images", classes=4, per_class=12)
    hashpa("train", "--data", folder, "--out", base / "run", "--epochs", 1, *TINY)
    return base, folder


def test_two_ranks_train_one_run_directory_that_evaluates_like_any(trained):
    base, folder = trained
    assert sorted(p.name for p in (base / "run").iterdir()) == [".hashpa.json", ".hashpa.lock", "best.pt", "config.json", "history.jsonl", "last.pt"]
    history = [json.loads(line) for line in (base / "run" / "history.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("stage")) for r in history] == [(0, "start"), (1, None), (1, "codes")]  # written once, by rank 0
    best = torch.load(base / "run" / "best.pt", weights_only=True)
    record = next(r for r in history if r["epoch"] == best["best"]["epoch"] and r.get("stage") == best["best"].get("stage"))
    evaluated = subprocess.run([sys.executable, "-m", "hashpa.cli", "eval", str(base / "run"), "--workers", "0", "--json"], cwd=ROOT,
                               capture_output=True, text=True, check=True)
    rows = {row["key"]: row for row in json.loads(evaluated.stdout)["rows"]}
    assert rows["codes"]["recall@1"] == pytest.approx(record["codes"]["recall@1"]) and rows["float"]["map@r"] == pytest.approx(record["float"]["map@r"])


def test_two_ranks_resume_a_run(trained, tmp_path):
    base, _ = trained
    run = tmp_path / "run"
    import shutil

    shutil.copytree(base / "run", run)
    hashpa("train", "--resume", run, "--epochs", 2)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("stage")) for r in history] == [(0, "start"), (1, None), (1, "codes"), (2, None), (2, "codes")]  # extended past its code stage


def test_two_ranks_index_bit_for_bit_as_one_process_and_update_it(trained, tmp_path):
    base, _ = trained
    catalogue = make_image_folder(tmp_path / "catalogue", classes=3, per_class=9, seed=4)
    common = ["--run-dir", base / "run", "--workers", "0", "--batch-size", "4", "--device", "cpu", "--binary-index", "BFlat", "--binary-index", "BHNSW16"]
    subprocess.run([sys.executable, "-m", "hashpa.cli", "index", str(catalogue), "--out", str(tmp_path / "one"), *map(str, common)], cwd=ROOT, check=True,
                   capture_output=True)
    hashpa("index", catalogue, "--out", tmp_path / "two", *common)
    one, two = read_store(index_file(tmp_path / "one", "store.h5")), read_store(index_file(tmp_path / "two", "store.h5"))
    assert one.paths == two.paths and np.array_equal(one.embeddings, two.embeddings) and np.array_equal(one.codes, two.codes)
    for name in ("float-Flat.faiss", "binary-BFlat.faiss", "binary-BHNSW16.faiss"):
        assert index_file(tmp_path / "one", name).read_bytes() == index_file(tmp_path / "two", name).read_bytes(), name
    make_image_folder(catalogue, classes=3, per_class=11, seed=5)  # 6 new images, 27 changed
    out = hashpa("index", catalogue, "--out", tmp_path / "two", *common, "--json").stdout
    summary = json.loads(out[out.index("{"):])
    assert (summary["rows"], summary["embedded"]) == (33, 33)


def test_a_killed_rank_leaves_finished_batches_that_a_rerun_reuses(trained, tmp_path):
    """SIGKILL of rank 1 once it has kept a batch: torchrun stops the job; the rerun embeds only
    what no rank finished and writes the index an uninterrupted run writes."""
    import signal
    import time

    base, _ = trained
    catalogue = make_image_folder(tmp_path / "catalogue", classes=4, per_class=40, seed=6)
    common = ["--run-dir", base / "run", "--workers", "0", "--batch-size", "4", "--device", "cpu"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port",
               str(free_port()), "-m", "hashpa.cli", "index", str(catalogue), "--out", str(tmp_path / "killed"), *map(str, common)]
    job = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "killed").glob(".partial-*/batch-r001-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.02)
    ranks = subprocess.run(["pgrep", "-f", "-P", str(job.pid), "hashpa.cli"], capture_output=True, text=True).stdout.split()
    victim = next(pid for pid in map(int, ranks) if "LOCAL_RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").replace("\0", " "))
    os.kill(victim, signal.SIGKILL)
    assert job.wait(timeout=120) != 0 and not (tmp_path / "killed" / "index.json").exists()
    kept = sum(len(np.load(p)["paths"]) for p in (tmp_path / "killed").glob(".partial-*/batch-*.npz"))
    assert 0 < kept < 160
    out = hashpa("index", catalogue, "--out", tmp_path / "killed", *common, "--json").stdout
    summary = json.loads(out[out.index("{"):])
    assert (summary["embedded"], summary["reused"]) == (160 - kept, kept)
    subprocess.run([sys.executable, "-m", "hashpa.cli", "index", str(catalogue), "--out", str(tmp_path / "whole"), *map(str, common)], cwd=ROOT,
                   check=True, capture_output=True)
    for name in ("store.h5", "float-Flat.faiss", "binary-BFlat.faiss"):
        if name == "store.h5":
            one, two = read_store(index_file(tmp_path / "whole", name)), read_store(index_file(tmp_path / "killed", name))
            assert one.paths == two.paths and np.array_equal(one.embeddings, two.embeddings) and np.array_equal(one.codes, two.codes)
        else:
            assert index_file(tmp_path / "whole", name).read_bytes() == index_file(tmp_path / "killed", name).read_bytes(), name
