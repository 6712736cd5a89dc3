"""Flowers-102 training runs for the benchmarks: one schedule's options, and a run trained as
``hashpa train`` trains it, continued when interrupted and reused when finished.

The schedule is the cpu-quick recipe's (tf_efficientnet_lite0 with its ImageNet weights, 112 px,
batch 120, frozen BatchNorm) with the epochs, code stage and evaluations a benchmark chooses.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import hashpa
from hashpa.runs.directory import RunDir

log = logging.getLogger("eval.flowers_runs")


def add_schedule_options(parser: argparse.ArgumentParser, epochs: int, code_views: int | None = None, workers: int = 2) -> None:
    """The options of the data and the training schedule (a benchmark's defaults for `epochs`,
    `code_views` (None: the trainer's) and the DataLoader `workers`)."""
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flowers102-112"))
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=120)
    parser.add_argument("--code-epochs", type=int, help="epochs of the code stage (default: the trainer's; 0: none)")
    trainer = "the trainer's" if code_views is None else code_views
    parser.add_argument("--code-views", type=int, default=code_views, help=f"augmented passes of the training photos in the code stage (default: {trainer})")
    parser.add_argument("--code-validation", type=float, help="held-out fraction choosing the code stage's epochs (default: the trainer's; 0: none)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=workers)
    parser.add_argument("--seed", type=int, default=0)


def run_name(alpha: float, delta: float, bits: int, *variant: str) -> str:
    """A run's folder name under <--out>/runs/, so that benchmarks sharing --out share their runs
    (a32-d0.1-64bit is the default run of the sensitivity grid, the proxies and the batch benchmarks)."""
    return "-".join([f"a{alpha:g}", f"d{delta:g}", f"{bits}bit", *variant])


def run_settings(args: argparse.Namespace, split: str, out: Path, overrides: dict) -> dict:
    """The settings of one run: the schedule's, then `overrides`."""
    return {
        "data": str(args.data), "split": split, "out": str(out), "epochs": args.epochs, "batch_size": args.batch_size,
        "image_size": args.image_size, "backbone": args.backbone, "weights": args.weights, "freeze_bn": True,
        "workers": args.workers, "device": args.device, "eval_every": 1, "seed": args.seed, "code_epochs": args.code_epochs,
        "code_views": args.code_views, "code_validation": args.code_validation, **overrides,
    }


def train_run(args: argparse.Namespace, name: str, overrides: dict, split: str = "half"):
    """The hashpa.TrainResult of the run `name` (under <--out>/runs/) with the schedule's settings and
    `overrides`: trained, continued from its last checkpoint, or read back when finished."""
    run_dir = args.out / "runs" / name
    started = time.perf_counter()
    result = trained(run_dir, run_settings(args, split, run_dir, overrides))
    log.info("%s: ready in %.0f s", name, time.perf_counter() - started)
    return result


def trained(run_dir: Path, settings: dict):
    """The hashpa.TrainResult of the run in `run_dir`: continued from its last checkpoint (read back
    when finished), or trained with `settings` when it has none. A run trained with other settings
    is an error, never reported as the one asked for."""
    if RunDir(run_dir).has_checkpoint():
        changed = setting_differences(run_dir, settings)
        if changed:
            raise SystemExit(f"the run {run_dir} was trained with other settings ({'; '.join(changed)}): "
                             "give another --out, or remove that run to train it again")
        return hashpa.resume(run_dir)
    return hashpa.train(hashpa.resolve_config(settings))


# Where and how fast a run trains, and how often it is evaluated on the way: not what it learns.
NOT_COMPARED = {"out", "device", "workers", "eval_every"}


def setting_differences(run_dir: Path, settings: dict) -> list[str]:
    """Each setting of `settings` that the run in `run_dir` was trained without, as
    "name: the run's value, the asked value"."""
    kept, asked = (flat_settings(config) for config in (RunDir(run_dir).read_config(find_data=False), hashpa.resolve_config(settings)))
    return [f"{name}: {kept.get(name)!r} in the run, {value!r} asked" for name, value in asked.items()
            if name not in NOT_COMPARED and kept.get(name) != value]


def flat_settings(config) -> dict:
    """A TrainConfig as one flat dict (model settings as model.NAME), its data folders as absolute paths."""
    values = config.to_dict()
    model = values.pop("model")
    values.update({name: str(Path(folder).resolve()) for name, folder in config.data_folders().items()})
    return {**values, **{f"model.{name}": value for name, value in model.items()}}


def training_seconds(result) -> float:
    """Seconds a run spent in its epochs and code stage (also across interruptions)."""
    return float(sum(record["seconds"] for record in result.history))
