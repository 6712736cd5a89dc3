"""Exact large batches in small memory (``--chunk-size``): what a training step costs against the
batch size with and without chunks, and what a larger batch buys on Flowers-102.

    python -m eval.large_batches --data ../shared/data/flowers102-112 --out bench-results/paper-frontier

1. Cost: training steps of ``hashpa train``'s own step (``Trainer.gradients`` and the optimiser step;
   tf_efficientnet_lite0 at 112 px, frozen BatchNorm, 64-bit head, 51 classes) on random images,
   for every --batches size, whole and in chunks of --chunk images. Each setting runs in a process
   of its own: peak memory is the process's (on CUDA, the device's peak allocation; on a CPU, the
   growth of the peak resident set over the model's) and images/s the median of --steps timed steps
   after one warm-up step.
2. Quality: Recall@1 on the unseen classes after the same epochs of the short CPU schedule
   (``eval.flowers_runs``) with batch 120 in one piece (the sensitivity grid's default cell) and
   batch --large in chunks of 120.

``--cost-only`` skips the training runs. Finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eval.flowers_runs import add_schedule_options, run_name, train_run, training_seconds
from eval.publish import command_line, parse_benchmark_args, publish

log = logging.getLogger("eval.large_batches")

CLASSES = 51  # Flowers-102's training classes
DEFAULT_ALPHA, DEFAULT_DELTA = 32, 0.1


def step_cost(batch: int, chunk: int, steps: int, image_size: int, device: str, backbone: str, weights: str) -> dict:
    """Peak memory and images/s of hashpa's training step at `batch` (chunk 0: whole), in this process."""
    import torch

    import hashpa
    from eval.synthetic import make_image_folder
    from hashpa.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as scratch:
        folder = make_image_folder(Path(scratch) / "images", classes=CLASSES, per_class=2)
        config = hashpa.resolve_config({"data": str(folder), "split": "seen", "out": str(Path(scratch) / "run"), "backbone": backbone,
                                        "weights": weights, "image_size": image_size, "bits": 64, "freeze_bn": True, "batch_size": 2,
                                        "chunk_size": chunk, "device": device, "workers": 0, "warmup_epochs": 0, "code_epochs": 0})
        trainer = Trainer(config)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, image_size, image_size, generator=generator).to(trainer.device)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator).to(trainer.device)
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    resident_before = _peak_resident_mb()
    trainer.network.train()
    seconds = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        trainer.gradients(images, labels, frozen=False)
        trainer.optimizer.step()
        if cuda:
            torch.cuda.synchronize(trainer.device)
        seconds.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(trainer.device) / 2**20 if cuda else _peak_resident_mb() - resident_before
    return {"batch": batch, "chunk": chunk, "images_per_second": batch / statistics.median(seconds[1:]), "peak_mb": peak,
            "memory": "device peak allocation" if cuda else "growth of the peak resident set", "device": str(trainer.device)}


def _peak_resident_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def costs(args) -> list[dict]:
    """step_cost of every setting, each in a fresh process (its own peak memory)."""
    rows = []
    for batch in args.batches:
        for chunk in (0, args.chunk):
            if chunk >= batch:
                continue
            command = [sys.executable, "-m", "eval.large_batches", "--measure-step", str(batch), str(chunk), "--steps", str(args.steps),
                       "--image-size", str(args.image_size), "--device", args.device, "--backbone", args.backbone, "--weights", args.weights]
            answer = subprocess.run(command, capture_output=True, text=True)
            if answer.returncode:
                log.warning("batch %d chunk %d failed: %s", batch, chunk, answer.stderr.strip().splitlines()[-1:] or answer.returncode)
                rows.append({"batch": batch, "chunk": chunk, "failed": (answer.stderr.strip().splitlines() or ["?"])[-1]})
                continue
            rows.append(json.loads(answer.stdout.strip().splitlines()[-1]))
            log.info("%s", rows[-1])
    return rows


def run(args, argv: list[str] | None) -> dict:
    from hashpa.data.splits import split_folder

    report = {"costs": costs(args), "quality": [], "epochs": args.epochs}
    body = lambda: markdown(report, args)  # noqa: E731
    publish(args, "large-batches", command_line("eval.large_batches", argv), report, body())
    if args.cost_only:
        return report
    training_images = len(split_folder(args.data, "half").train)
    for batch, chunk in ((args.batch_size, 0), (args.large, args.batch_size)):
        variant = () if chunk == 0 else (f"batch{batch}", f"chunk{chunk}")
        result = train_run(args, run_name(DEFAULT_ALPHA, DEFAULT_DELTA, 64, *variant),
                           {"bits": 64, "baseline": False, "eval_every": args.epochs, "batch_size": batch, "chunk_size": chunk})
        final = result.history[-1]
        report["quality"].append({"batch": batch, "chunk": chunk, "float": final["float"], "codes": final["codes"],
                                  "seconds": training_seconds(result), "steps_per_epoch": training_images // batch})
        publish(args, "large-batches", command_line("eval.large_batches", argv), report, body())
    return report


def markdown(report: dict, args) -> str:
    lines = [f"Training step cost, {args.backbone} at {args.image_size} px, 64-bit head, {CLASSES} classes (random images; median of "
             f"{args.steps} steps):", "", "| batch | chunks of | images/s | peak memory (MiB) |", "|---|---|---|---|"]
    for r in report["costs"]:
        if "failed" in r:
            lines.append(f"| {r['batch']} | {r['chunk'] or 'whole'} | failed: {r['failed']} | - |")
        else:
            lines.append(f"| {r['batch']} | {r['chunk'] or 'whole'} | {r['images_per_second']:.1f} | {r['peak_mb']:.0f} |")
    memory = next((r["memory"] for r in report["costs"] if "memory" in r), "")
    lines += ["", f"Peak memory: {memory}."]
    if report["quality"]:
        lines += ["", f"Flowers-102 unseen classes after {report['epochs']} epochs (each run's end):", "",
                  "| batch | chunks of | steps per epoch | float R@1 | float MAP@R | 64-bit codes R@1 | training s |", "|---|---|---|---|---|---|---|"]
        for r in report["quality"]:
            lines.append(f"| {r['batch']} | {r['chunk'] or 'whole'} | {r['steps_per_epoch']} | {r['float']['recall@1']:.4f} | "
                         f"{r['float']['map@r']:.4f} | {r['codes']['recall@1']:.4f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_schedule_options(parser, epochs=3, code_views=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[60, 120, 240, 480])
    parser.add_argument("--chunk", type=int, default=60, help="chunk size of the chunked steps in the cost table")
    parser.add_argument("--large", type=int, default=480, help="the large batch of the quality runs (chunks of --batch-size)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cost-only", action="store_true")
    parser.add_argument("--measure-step", type=int, nargs=2, metavar=("BATCH", "CHUNK"), help=argparse.SUPPRESS)
    if "--measure-step" in (argv if argv is not None else sys.argv[1:]):
        args = parser.parse_args(argv)
        print(json.dumps(step_cost(*args.measure_step, args.steps, args.image_size, args.device, args.backbone, args.weights)))
        return
    args = parse_benchmark_args(parser, "large-batches", argv)
    run(args, argv)


if __name__ == "__main__":
    main()
