"""Indexing throughput: ``hashpa index`` against the model's own inference speed.

    python -m eval.bench_index --data ../shared/data/flowers102-112 --run-dir runs/flowers --out bench-results/index-cpu

(a) the model alone: ``model.embed`` on synthetic tensors already on the device, same batch size
    (measured before and after the indexing runs; the faster counts);
(b) ``hashpa index`` over the folder (--decode pil: decoding in DataLoader workers, overlapped with
the model; --decode device: workers read the files, the model's device decodes), images/s of the
embedding phase; the ratio (b)/(a) is the share of the model's speed the data path
keeps. Writes index.json and index.md.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import torch

import hashpa
from eval.publish import command_line, data_missing, parse_benchmark_args, publish
from hashpa.devices import autocast, synchronize

log = logging.getLogger("eval.bench_index")


def model_limit(model: hashpa.Model, batch_size: int, batches: int) -> float:
    """Images/s of the model's network on random tensors already on its device."""
    size, device = model.preprocessing.input_size, model.device
    images = torch.randn(batch_size, 3, size, size, device=device)
    with autocast(device):
        model.network.embed(images)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(batches):
            model.network.embed(images)
        synchronize(device)
    return batches * batch_size / (time.perf_counter() - started)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flowers102-112"))
    parser.add_argument("--run-dir", "--model", dest="run", type=Path, required=True, help="a training run directory")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--decode", nargs="+", choices=("pil", "device"), default=["pil"], help="JPEG decoding: PIL in workers, or on the model's device")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit-batches", type=int, default=20)
    args = parse_benchmark_args(parser, "index", argv)
    if data_missing(args.data, "indexing"):
        return
    model = hashpa.load(args.run, "best", args.device)
    limits = [model_limit(model, args.batch_size, args.limit_batches)]
    rows = []
    for decode in args.decode:
        for workers in args.workers:
            target = args.out / f"index-{decode}-{workers}-workers"
            shutil.rmtree(target, ignore_errors=True)
            summary = hashpa.build_index(args.data, args.run, target, device=str(model.device), batch_size=args.batch_size, workers=workers,
                                         decode=decode)
            rows.append({"decode": decode, "workers": workers, "images": summary.rows, "images_per_second": summary.images_per_second})
            log.info("%s", rows[-1])
    # the model's speed drifts on a shared machine: measured before and after, the faster one is the limit
    limits.append(model_limit(model, args.batch_size, args.limit_batches))
    limit = max(limits)
    for row in rows:
        row["fraction_of_model_limit"] = row["images_per_second"] / limit
    results = {"model_images_per_second": limit, "model_images_per_second_before_after": limits, "rows": rows}
    lines = ["", f"Model alone (synthetic batches of {args.batch_size} at {model.preprocessing.input_size} px, the faster of a measurement "
             f"before and after the runs: {limits[0]:,.0f} and {limits[1]:,.0f}): {limit:,.0f} images/s", "",
             "| decoding | DataLoader workers | images | hashpa index images/s | share of the model's speed |", "|---|---|---|---|---|"]
    lines += [f"| {r['decode']} | {r['workers']} | {r['images']:,} | {r['images_per_second']:,.0f} | {r['fraction_of_model_limit']:.2f} |" for r in rows]
    publish(args, "index", command_line("eval.bench_index", argv), results, "\n".join(lines))


if __name__ == "__main__":
    main()
