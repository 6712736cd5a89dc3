"""Training throughput: the model alone, hashpa's pipeline, and a paper-style reference pipeline.

    python -m hashpa.eval.bench_train --data ../shared/data/flowers102-112 --backbone resnet50 \
        --batch-size 180 --image-size 224 --out bench-results/train-gpu

(a) backbone limit: forward + backward + optimiser step on synthetic tensors already on the device
    (bf16 autocast and channels_last on CUDA, optionally torch.compile);
(b) hashpa: ``Trainer.train_epoch`` from the JPEG folder with the trainer's defaults for the device
    (on CUDA: decoded image cache, batched on-device augmentation, bf16, channels_last);
(c) reference: fp32, PIL decoding and per-image transforms in DataLoader workers (the paper's code).
Images/s of each and the ratios (b)/(a) and (b)/(c). --time-to-accuracy also trains until
Recall@1 on the unseen classes stops improving and reports the seconds. Writes train.json/train.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from hashpa.eval.report import add_output_options, command_line, data_missing, publish
from hashpa.inference import autocast, resolve_device

log = logging.getLogger("hashpa.bench_train")


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
    _sync(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - started)


def pipeline(args, device_name: str, reference: bool, compile_model: bool) -> float:
    """Images/s of one training epoch of hashpa's trainer from the JPEG folder (after a warm-up epoch)."""
    from hashpa.train import Trainer, resolve_config

    overrides = {"data": str(args.data), "split": "half", "out": str(args.out / ("reference" if reference else "hashpa")),
                 "backbone": args.backbone, "weights": "none", "image_size": args.image_size, "batch_size": args.batch_size,
                 "epochs": 2, "warmup_epochs": 0, "workers": args.workers, "device": device_name, "compile": compile_model,
                 "hash_init": "random"}
    if reference:
        overrides.update(amp=False, channels_last=False, data_path="files", compile=False)
    trainer = Trainer(resolve_config("folder", overrides))
    trainer.train_epoch()  # warm-up: workers start, the decoded cache is built, kernels are chosen
    trainer.epoch = 1
    return trainer.train_epoch()["images_per_second"]


def time_to_accuracy(args, device_name: str, patience: int = 2) -> dict:
    from hashpa.train import Trainer, resolve_config

    trainer = Trainer(resolve_config("folder", {"data": str(args.data), "split": "half", "out": str(args.out / "tta"),
                                                "backbone": args.backbone, "weights": "imagenet", "image_size": args.image_size,
                                                "batch_size": args.batch_size, "epochs": args.max_epochs, "workers": args.workers,
                                                "device": device_name, "freeze_bn": True}))
    trainer.start()
    started, best, best_at, stale, curve = time.perf_counter(), 0.0, 0.0, 0, []
    while trainer.epoch < args.max_epochs and stale < patience:
        record = trainer.train_epoch()
        record.update(trainer.evaluate())
        trainer.epoch += 1
        elapsed = time.perf_counter() - started
        r1 = record["float"]["recall@1"]
        curve.append({"epoch": trainer.epoch, "seconds": elapsed, "float_recall@1": r1, "codes_recall@1": record["codes"]["recall@1"]})
        if r1 > best:
            best, best_at, stale = r1, elapsed, 0
        else:
            stale += 1
    return {"best_float_recall@1": best, "seconds_to_best": best_at, "curve": curve}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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
    publish(args, "train", command_line("hashpa.eval.bench_train", argv), results, "\n".join(lines))

if __name__ == "__main__":
    main()
