"""Training throughput: the model alone, hashpa's pipeline, and a paper-style reference pipeline.

    python -m eval.bench_train --data ../shared/data/flowers102-112 --backbone resnet50 \
        --batch-size 180 --image-size 224 --out bench-results/train-gpu

(a) backbone limit: forward + backward + optimiser step on synthetic tensors already on the device
    (bf16 autocast and channels_last on CUDA, optionally torch.compile);
(b) hashpa: ``hashpa train`` from the JPEG folder with the trainer's defaults for the device (on
    CUDA: decoded image cache, batched on-device augmentation, bf16, channels_last): the images/s
    its history records for the second epoch (the first builds the cache and warms up);
(c) reference: the same with fp32 and PIL decoding and per-image transforms in DataLoader workers
    (the paper's code).
Images/s of each and the ratios (b)/(a) and (b)/(c). --time-to-accuracy also trains --max-epochs
epochs evaluating after each and reports the seconds to the best float Recall@1 on the unseen
classes. Writes train.json/train.md.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import hashpa
from eval.publish import add_output_options, command_line, data_missing, publish
from hashpa.devices import autocast, resolve_device, synchronize

log = logging.getLogger("eval.bench_train")


def synthetic_limit(args, device: torch.device, compile_model: bool) -> float:
    """Images/s of training steps on random tensors that never leave the device."""
    from hashpa.losses import ProxyAnchorLoss
    from hashpa.models import HashingModel, ModelConfig

    model = HashingModel(ModelConfig(backbone=args.backbone, weights="none", image_size=args.image_size, bits=64)).to(device)
    loss = ProxyAnchorLoss(100, 512).to(device)
    fast = device.type == "cuda"
    if fast:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss.parameters()), lr=1e-4)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    if fast:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 100, (args.batch_size,), device=device)

    def step():
        with autocast(device, fast):
            out = forward(images)
        value = loss(out.embeddings, labels)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    for _ in range(args.warmup_steps):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    return args.steps * args.batch_size / (time.perf_counter() - started)


def run_settings(args, device: str, name: str, **changes) -> dict:
    """A fresh run directory `name` under --out (an earlier one is removed) and its settings."""
    shutil.rmtree(args.out / name, ignore_errors=True)
    return {"data": str(args.data), "split": "half", "out": str(args.out / name), "backbone": args.backbone, "image_size": args.image_size,
            "batch_size": args.batch_size, "workers": args.workers, "device": device, "code_epochs": 0, **changes}


def pipeline(args, device: str, reference: bool, compile_model: bool) -> float:
    """Images/s of the second epoch of ``hashpa train`` from the JPEG folder."""
    changes = dict(weights="none", epochs=2, warmup_epochs=0, hash_init="random", eval_every=2, compile=compile_model)
    if reference:
        changes.update(amp=False, channels_last=False, data_path="files", compile=False)
    result = hashpa.train(hashpa.resolve_config(run_settings(args, device, "reference" if reference else "hashpa", **changes)))
    return result.history[1]["images_per_second"]


def time_to_accuracy(args, device: str) -> dict:
    """``hashpa train`` for --max-epochs, evaluated after every epoch: the best float Recall@1 and the
    training seconds (the history's, summed) until it."""
    result = hashpa.train(hashpa.resolve_config(run_settings(args, device, "tta", weights="imagenet", epochs=args.max_epochs,
                                                             eval_every=1, freeze_bn=True)))
    seconds = np.cumsum([r["seconds"] for r in result.history])
    curve = [{"epoch": r["epoch"], "seconds": float(s), "float_recall@1": r["float"]["recall@1"], "codes_recall@1": r["codes"]["recall@1"]}
             for r, s in zip(result.history, seconds)]
    best = max(curve, key=lambda point: point["float_recall@1"])
    return {"best_float_recall@1": best["float_recall@1"], "seconds_to_best": best["seconds"], "curve": curve}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flowers102-112"))
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=180)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--time-to-accuracy", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=20)
    add_output_options(parser, "train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if data_missing(args.data, "training"):
        return
    device = resolve_device(args.device)
    results = {"limit_images_per_second": synthetic_limit(args, device, args.compile)}
    results["hashpa_images_per_second"] = pipeline(args, str(device), reference=False, compile_model=args.compile)
    results["reference_images_per_second"] = pipeline(args, str(device), reference=True, compile_model=False)
    results["hashpa_over_limit"] = results["hashpa_images_per_second"] / results["limit_images_per_second"]
    results["hashpa_over_reference"] = results["hashpa_images_per_second"] / results["reference_images_per_second"]
    if args.time_to_accuracy:
        results["time_to_accuracy"] = time_to_accuracy(args, str(device))
    lines = ["",
             "| pipeline | images/s |", "|---|---|",
             f"| (a) backbone limit, synthetic tensors on the device | {results['limit_images_per_second']:,.0f} |",
             f"| (b) hashpa train from the JPEG folder | {results['hashpa_images_per_second']:,.0f} ({results['hashpa_over_limit']:.2f} x (a)) |",
             f"| (c) reference: fp32, PIL DataLoader | {results['reference_images_per_second']:,.0f} ((b) is {results['hashpa_over_reference']:.2f} x (c)) |"]
    if "time_to_accuracy" in results:
        tta = results["time_to_accuracy"]
        lines.append(f"\nTime to accuracy: best float Recall@1 {tta['best_float_recall@1']:.4f} after {tta['seconds_to_best']:.0f} s")
    publish(args, "train", command_line("eval.bench_train", argv), results, "\n".join(lines))


if __name__ == "__main__":
    main()
