"""Reliability: ``hashpa train`` and ``hashpa index`` killed with SIGKILL at random points, resumed as a
user would, and compared bit for bit with an uninterrupted run.

    python -m eval.kill_resume --points 20 --benchmarks BENCHMARKS.md --out bench-results/kill-resume

Both commands run as subprocesses of the installed ``hashpa`` on a generated folder (small CNN, CPU).
Kill points are drawn from three kinds: a random moment of the run; the moment a checkpoint or
index file is being written (a hashpa temporary file appears); and, for training, a random moment
of the code stage (after the last epoch's record). After a kill the same command runs again
(``hashpa train --resume`` once last.pt exists), until it finishes. Compared with the
uninterrupted run: for training, every tensor of last.pt and best.pt, the history without its
timings, the best record; for indexing, every dataset of store.h5 and the bytes of every FAISS file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from eval.publish import command_line, parse_benchmark_args, publish
from eval.synthetic import make_image_folder
from hashpa.fileio import TEMPORARY_MARK
from hashpa.indexdir.generations import GENERATION_PREFIX
from hashpa.indexdir.layout import read_meta

log = logging.getLogger("eval.kill_resume")

TRAIN = ["--backbone", "smallcnn", "--weights", "none", "--dim", "32", "--bits", "32", "--split", "seen", "--epochs", "4",
         "--batch-size", "16", "--lr", "0.003", "--workers", "0", "--warmup-epochs", "0", "--eval-every", "1", "--code-epochs", "6"]
KINDS = ("moment", "write", "code stage")


def hashpa_command() -> list[str]:
    return [sys.executable, "-c", "from hashpa.cli.main import main; main()"]


def run_until_done(command: list[str], resume: list[str] | None, env: dict, kill: tuple[str, float] | None, watch: Path,
                   written: str = "") -> dict:
    """Run `command`, killing it once as `kill` says (a "write" kill: while the n-th temporary file
    whose name holds `written` exists); then rerun (`resume` once it applies) until it exits 0."""
    attempts, killed_at = 0, None
    while True:
        use = resume if resume and (watch / "last.pt").is_file() else command
        process = subprocess.Popen(hashpa_command() + use, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        attempts += 1
        if kill is not None and killed_at is None:
            killed_at = _kill_when(process, kill, watch, written)
        _, stderr = process.communicate()
        if process.returncode == 0:
            return {"attempts": attempts, "killed": killed_at}
        if process.returncode != -signal.SIGKILL:
            raise RuntimeError(f"{' '.join(use)} failed with {process.returncode}: {stderr.decode()[-2000:]}")


def _kill_when(process: subprocess.Popen, kill: tuple[str, float], watch: Path, written: str) -> str:
    """Wait for the kill point, SIGKILL the process group, say where it landed."""
    kind, value = kill
    started = time.perf_counter()
    seen: set[str] = set()
    while process.poll() is None:
        elapsed = time.perf_counter() - started
        if kind == "moment" and elapsed >= value:
            break
        if kind == "write":
            seen.update(p.name for p in _files(watch) if TEMPORARY_MARK in p.name and written in p.name)
            if len(seen) >= value:
                break
        if kind == "code stage" and _last_epoch_recorded(watch) and elapsed >= 0:
            time.sleep(value)
            break
        time.sleep(0.0005)
    if process.poll() is not None:
        return f"{kind}: the run ended first"
    os.killpg(process.pid, signal.SIGKILL)
    temporaries = [p.name for p in _files(watch) if TEMPORARY_MARK in p.name]
    return f"{kind} {value:g}: killed at {time.perf_counter() - started:.2f} s" + (f" while writing {', '.join(temporaries)}" if temporaries else "")


def _files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.rglob("*") if p.is_file()]
    except OSError:  # a file renamed while listed
        return []


def _last_epoch_recorded(run: Path) -> bool:
    try:
        return any(json.loads(line).get("epoch") == 4 for line in (run / "history.jsonl").read_text().splitlines() if line.strip())
    except (OSError, json.JSONDecodeError):
        return False


def same_training(reference: Path, run: Path) -> list[str]:
    """What differs between two run directories (empty: bit for bit the same)."""
    differences = []
    for name in ("last.pt", "best.pt"):
        a, b = torch.load(reference / name, weights_only=True), torch.load(run / name, weights_only=True)
        for part in ("model", "objective", "optimizer"):
            if part in a and not _equal(a[part], b.get(part)):
                differences.append(f"{name} {part}")
        if a["best"] != b["best"] or a["epoch"] != b["epoch"]:
            differences.append(f"{name} epoch or best record")
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if "seconds" not in k and k != "images_per_second"}  # noqa: E731
                          for line in (path / "history.jsonl").read_text().splitlines()]
    if strip(reference) != strip(run):
        differences.append("history.jsonl")
    return differences


def same_index(reference: Path, index: Path) -> list[str]:
    """What differs between two index directories' current generations: store datasets, FAISS files
    and the names of their files (generation names aside)."""
    differences = []
    ours, theirs = _generation(reference), _generation(index)
    with h5py.File(ours / "store.h5", "r") as a, h5py.File(theirs / "store.h5", "r") as b:
        for name in ("paths", "labels", "class_names", "embeddings", "codes", "sizes", "mtimes"):
            if not np.array_equal(a[name][()], b[name][()]):
                differences.append(f"store.h5 {name}")
    for path in ours.glob("*.faiss"):
        if path.read_bytes() != (theirs / path.name).read_bytes():
            differences.append(path.name)
    names = lambda folder: sorted("gen-*" if p.name.startswith(GENERATION_PREFIX) else p.name for p in folder.iterdir())  # noqa: E731
    if names(index) != names(reference) or names(ours) != names(theirs):
        differences.append("the files of the index directory")
    return differences


def _generation(index_dir: Path) -> Path:
    """The folder of an index directory's current generation."""
    return index_dir / Path(read_meta(index_dir).store).parent


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    images = make_image_folder(work / "train-images", classes=4, per_class=16)
    catalogue = make_image_folder(work / "catalogue", classes=6, per_class=60, seed=1)
    env = {**os.environ, "HASHPA_CACHE": str(work / "cache"), "PYTHONWARNINGS": "ignore"}
    train = lambda out: ["train", "--data", str(images), "--out", str(out), *TRAIN]  # noqa: E731
    index = lambda out: ["index", str(catalogue), "--run-dir", str(work / "reference-run"), "--out", str(out), "--workers", "0",  # noqa: E731
                         "--batch-size", "8", "--binary-index", "BFlat", "--binary-index", "BHNSW32"]
    started = time.perf_counter()
    run_until_done(train(work / "reference-run"), None, env, None, work / "reference-run")
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run_until_done(index(work / "reference-index"), None, env, None, work / "reference-index")
    index_seconds = time.perf_counter() - started
    results = {"train_seconds": train_seconds, "index_seconds": index_seconds, "train": [], "index": []}
    for i in range(args.points):
        kind = KINDS[i % 3]
        value = {"moment": rng.uniform(1.5, train_seconds), "write": int(rng.integers(1, 7)), "code stage": rng.uniform(0, 1.5)}[kind]
        out = work / f"train-{i:02d}"
        outcome = run_until_done(train(out), ["train", "--resume", str(out)], env, (kind, value), out, written=".pt")
        results["train"].append({**outcome, "differences": same_training(work / "reference-run", out)})
        log.info("train %d: %s", i, results["train"][-1])
    for i in range(args.points):
        kind = KINDS[i % 2]
        value = {"moment": rng.uniform(1.0, index_seconds), "write": int(rng.integers(1, 30))}[kind]
        out = work / f"index-{i:02d}"
        outcome = run_until_done(index(out), None, env, (kind, value), out)
        results["index"].append({**outcome, "differences": same_index(work / "reference-index", out)})
        log.info("index %d: %s", i, results["index"][-1])
    for name in ("train", "index"):
        results[f"{name}_identical"] = sum(not r["differences"] for r in results[name])
    return results


def markdown(results: dict, points: int) -> str:
    lines = ["", f"Uninterrupted: train {results['train_seconds']:.1f} s, index {results['index_seconds']:.1f} s (each a fresh process). "
             f"**Bit for bit the same after a kill and a resume: train {results['train_identical']} of {points}, "
             f"index {results['index_identical']} of {points}.**", "",
             "| command | kill point | runs to finish | differences |", "|---|---|---|---|"]
    for name in ("train", "index"):
        for r in results[name]:
            lines.append(f"| {name} | {r['killed']} | {r['attempts']} | {', '.join(r['differences']) or 'none'} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20, help="kills of each command")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_benchmark_args(parser, "reliability", argv)
    results = run(args)
    publish(args, "reliability", command_line("eval.kill_resume", argv), results, markdown(results, args.points))
    if results["train_identical"] < args.points or results["index_identical"] < args.points:
        sys.exit(1)


if __name__ == "__main__":
    main()
