"""Scale of ``hashpa index`` on one machine: peak resident memory of an incremental update over a
store of a million rows, and of a fresh index of 100,000 small generated images, in one process
and on 2 torchrun ranks (with their images/s).

    python -m eval.bench_scale --rows 1000000 --images 100000 --benchmarks BENCHMARKS.md

Every measured command is the installed ``hashpa`` in its own process; its peak resident set
(ru_maxrss; under torchrun the largest process's) is reported.
The million-row folder is made of hard links to a few hundred generated images (cheap on disk);
its store is written by the library with the model's real embedding of each link's image, so the
update finds every row unchanged and embeds only the new images added for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import hashpa
from eval.publish import command_line, parse_benchmark_args, publish
from eval.synthetic import make_image_folder
from hashpa.indexdir import Store, read_store, write_index_dir

log = logging.getLogger("eval.bench_scale")
HASHPA = [sys.executable, "-m", "hashpa.cli"]


# Runs the command and reports its peak: RUSAGE_CHILDREN of a small process, because a child forked
# from this (large) benchmark process would count the fork's resident memory as its own peak.
_PEAK = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
         "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)")


def measured(command: list[str], work: Path, env: dict | None = None) -> dict:
    """Run `command`; its wall time, peak resident memory (MiB; under torchrun the largest process's)
    and the JSON it printed last."""
    started = time.perf_counter()
    peak = work / "peak-kib.txt"
    result = subprocess.run([sys.executable, "-c", _PEAK, str(peak), *command], stdout=subprocess.PIPE, env={**os.environ, **(env or {})}, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed with status {result.returncode}")
    output = result.stdout
    summary = json.loads(output[output.index("{"):]) if "{" in output else {}
    return {"seconds": time.perf_counter() - started, "peak_mib": int(peak.read_text()) / 1024, "summary": summary}


def torchrun(processes: int) -> list[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master-addr", "127.0.0.1",
            "--master-port", str(port), "-m", "hashpa.cli"]


def make_model(work: Path, dim: int, bits: int) -> Path:
    run = work / "model"
    if not (run / "best.pt").is_file():
        subprocess.run([*HASHPA, "train", "--epochs", "0", "--backbone", "smallcnn", "--weights", "none", "--dim", str(dim), "--bits", str(bits),
                        "--device", "cpu", "--out", str(run)], check=True, stdout=subprocess.DEVNULL)
    return run


def million_row_folder(work: Path, rows: int, model: Path, distinct: int, per_folder: int = 1000) -> tuple[Path, Path]:
    """A folder of `rows` hard links to `distinct` generated images, and an index of it written by
    the library (every row as the model embeds its image)."""
    base = make_image_folder(work / "base", classes=8, per_class=distinct // 8, size=32, seed=1)
    base_index = work / "base-index"
    subprocess.run([*HASHPA, "index", str(base), "--run-dir", str(model), "--out", str(base_index), "--device", "cpu", "--workers", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    source = read_store(base_index / "store.h5")
    folder = work / "big"
    paths = [f"d{row // per_folder:05d}/i{row:07d}.png" for row in range(rows)]  # sorted as the store keeps them
    which = np.arange(rows) % len(source)
    if not folder.is_dir():
        log.info("linking %d files", rows)
        for row, path in enumerate(paths):
            if row % per_folder == 0:
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
            os.link(base / source.paths[which[row]], folder / path)
    stats = [os.stat(base / p) for p in source.paths]
    sizes, mtimes = np.array([s.st_size for s in stats], np.int64), np.array([s.st_mtime_ns for s in stats], np.int64)
    labels = (np.arange(rows) // per_folder).astype(np.int32)
    store = Store(paths=paths, labels=labels, class_names=sorted({p.split("/")[0] for p in paths}), embeddings=source.embeddings[which],
                  codes=source.codes[which], sizes=sizes[which], mtimes=mtimes[which], attrs={**source.attrs, "root": str(folder.resolve())})
    index = work / "index-1m"
    shutil.rmtree(index, ignore_errors=True)
    write_index_dir(index, store, source={"folder": folder, "model": model.resolve()})
    return folder, index


def run(args) -> dict:
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work, args.dim, args.bits)
    results = {"rows": args.rows, "images": args.images, "dim": args.dim, "bits": args.bits}

    folder, index = million_row_folder(work, args.rows, model, args.distinct)
    new = make_image_folder(folder / "new", classes=4, per_class=args.new // 4, size=32, seed=2)
    log.info("incremental update of %d rows with %d new images", args.rows, args.new)
    update = measured([*HASHPA, "index", str(folder), "--run-dir", str(model), "--out", str(index), "--device", "cpu", "--json"], work)
    results["update"] = {"peak_mib": update["peak_mib"], "seconds": update["seconds"], "embedded": update["summary"].get("embedded"),
                         "rows_after": update["summary"].get("rows")}
    shutil.rmtree(new)

    photos = work / "photos"
    if not photos.is_dir():
        log.info("generating %d images", args.images)
        make_image_folder(photos, classes=100, per_class=args.images // 100, size=32, seed=3)
    results["fresh"] = {}
    for ranks in (1, 2):
        out = work / f"fresh-{ranks}"
        shutil.rmtree(out, ignore_errors=True)
        launcher = HASHPA if ranks == 1 else torchrun(ranks)
        env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // ranks))}
        log.info("fresh index of %d images on %d rank(s)", args.images, ranks)
        fresh = measured([*launcher, "index", str(photos), "--run-dir", str(model), "--out", str(out), "--device", "cpu", "--json",
                          "--batch-size", "256"], work, env)
        results["fresh"][ranks] = {"peak_mib": fresh["peak_mib"], "seconds": fresh["seconds"],
                                   "images_per_second": fresh["summary"].get("images_per_second"), "rows": fresh["summary"].get("rows")}
    one, two = (read_store(work / f"fresh-{r}" / "store.h5") for r in (1, 2))
    results["ranks_identical"] = bool(np.array_equal(one.embeddings, two.embeddings) and np.array_equal(one.codes, two.codes))
    results["store_mib"] = {"update": (index / "store.h5").stat().st_size / 2**20, "fresh": (work / "fresh-1" / "store.h5").stat().st_size / 2**20}
    results["hashpa"] = hashpa.__version__
    return results


def markdown(r: dict) -> str:
    u, f = r["update"], r["fresh"]
    lines = [f"{r['dim']}-d float embeddings, {r['bits']}-bit codes, the default indexes (float Flat, binary BFlat); peak resident memory "
             "of the `hashpa index` process.", "",
             "| run | rows | embedded | store.h5 | peak memory | time | images/s |", "|---|---:|---:|---:|---:|---:|---:|",
             f"| incremental update | {u['rows_after']:,} | {u['embedded']:,} | {r['store_mib']['update']:,.0f} MiB | {u['peak_mib']:,.0f} MiB "
             f"| {u['seconds']:.0f} s | - |"]
    for ranks, row in f.items():
        lines.append(f"| fresh index, {ranks} rank{'s' if int(ranks) > 1 else ''} | {row['rows']:,} | {row['rows']:,} | {r['store_mib']['fresh']:,.0f} MiB "
                     f"| {row['peak_mib']:,.0f} MiB{' (largest rank)' if int(ranks) > 1 else ''} | {row['seconds']:.0f} s | {row['images_per_second']:,.0f} |")
    lines += ["", f"The 2-rank store is {'bit for bit' if r['ranks_identical'] else 'NOT'} the 1-rank store."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the store the incremental update starts from")
    parser.add_argument("--images", type=int, default=100_000, help="generated images of the fresh index")
    parser.add_argument("--new", type=int, default=1000, help="new images the incremental update embeds")
    parser.add_argument("--distinct", type=int, default=256, help="distinct images behind the hard links")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path("bench-results/scale-work"), help="scratch folder (kept: reruns reuse its folders)")
    args = parse_benchmark_args(parser, "scale", argv)
    results = run(args)
    publish(args, "scale", command_line("eval.bench_scale", argv), results, markdown(results))


if __name__ == "__main__":
    main()
