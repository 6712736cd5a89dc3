"""``hashpa train`` and ``hashpa builtin-path``."""

from __future__ import annotations

import click

from hashpa.cli.main import cli, friendly_errors
from hashpa.data.paper_datasets import DATASETS
from hashpa.losses import LOSS_NAMES
from hashpa.models.hashing_model import HASH_SOURCES
from hashpa.models.heads import POOLINGS
from hashpa.train.config import CODE_OBJECTIVES


@cli.command("builtin-path")
@friendly_errors
def builtin_path() -> None:
    """Print the built-in dataset's folder (writing it on first use)."""
    from hashpa.data import builtin_dataset

    click.echo(builtin_dataset())


@cli.command()
@click.option("--data", type=click.Path(file_okay=False), help="Image folder, one sub-folder per class. Default: the built-in dataset.")
@click.option("--dataset", type=click.Choice(DATASETS), help="One of the paper's datasets, read from --root.")
@click.option("--root", type=click.Path(file_okay=False), help="Folder holding --dataset.")
@click.option("--split", type=click.Choice(["half", "seen"]),
              help="half: first half of the classes trains, the rest tests (unseen classes); seen: hold out part of every class.")
@click.option("--train-dir", type=click.Path(file_okay=False), help="Explicit training folder (with --test-dir).")
@click.option("--test-dir", type=click.Path(file_okay=False), help="Explicit test folder (with --train-dir).")
@click.option("--test-fraction", type=float, help="With --split seen: fraction of each class held out.")
@click.option("--bits", type=int, help="Hash code length: a multiple of 8, 16-256.")
@click.option("--dim", type=int, help="Float embedding dimension.")
@click.option("--backbone", help="smallcnn, bn_inception, resnet18/50/101 or any timm model name.")
@click.option("--weights", help="imagenet, none, or a local state_dict / .safetensors file.")
@click.option("--pooling", type=click.Choice(POOLINGS))
@click.option("--hash-source", type=click.Choice(HASH_SOURCES), help="What the hash head reads.")
@click.option("--image-size", type=int, help="Input size in pixels (default: the backbone's).")
@click.option("--freeze-bn/--train-bn", default=None, help="Keep the backbone's BatchNorm layers frozen.")
@click.option("--loss", type=click.Choice(LOSS_NAMES), help="Metric loss of the float embedding.")
@click.option("--alpha", type=float, help="Proxy Anchor alpha (scale).")
@click.option("--margin", type=float, help="Proxy Anchor delta (margin).")
@click.option("--code-alpha", type=float, help="Proxy Anchor alpha on the relaxed codes.")
@click.option("--code-weight", type=float, help="Weight of Proxy Anchor on the relaxed codes.")
@click.option("--quantization-weight", type=float, help="Weight of the quantisation penalty.")
@click.option("--distill-weight", type=float, help="Weight of similarity distillation from the float embedding.")
@click.option("--decorrelation-weight", type=float, help="Weight of the bit decorrelation term.")
@click.option("--codes-train-backbone/--codes-train-head", default=None, help="Let the code losses train the backbone too.")
@click.option("--hash-init", type=click.Choice(["itq", "random"]), help="Start the hash head from PCA-ITQ of the training embeddings after the warm-up.")
@click.option("--code-epochs", type=int, help="Epochs of the code stage after the last epoch: the hash head fitted to the frozen model (0: none).")
@click.option("--code-views", type=int, help="Augmented passes over the training images for the code stage, besides the plain one.")
@click.option("--code-objective", type=click.Choice(CODE_OBJECTIVES),
              help="Code stage loss: proxy_anchor (seen classes), distill (new classes); auto picks by the split.")
@click.option("--code-lr", type=float, help="Learning rate of the code stage.")
@click.option("--code-margin", type=float, help="Proxy Anchor delta on the codes in the code stage.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--per-class", type=int, help="Class-balanced batches with this many images per class (0: plain shuffling).")
@click.option("--lr", type=float, help="Base learning rate (proxies get --proxy-lr-mult times it).")
@click.option("--weight-decay", type=float)
@click.option("--proxy-lr-mult", type=float)
@click.option("--warmup-epochs", type=int, help="Epochs with the backbone frozen.")
@click.option("--schedule", type=click.Choice(["step", "cosine"]))
@click.option("--lr-decay-step", type=int)
@click.option("--lr-decay-gamma", type=float)
@click.option("--eval-every", type=int, help="Evaluate every N epochs (and after the last).")
@click.option("--best-metric", type=click.Choice(["codes", "float"]), help="Which Recall@1 picks best.pt.")
@click.option("--seed", type=int)
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=int, help="DataLoader worker processes.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue the run in this directory (other options but --epochs/--device/--workers are taken from it).")
@friendly_errors
def train(resume_dir, **options) -> None:
    """Train Proxy Anchor float embeddings and hash codes; write a run directory."""
    from hashpa.train import resolve_config, resume
    from hashpa.train import train as train_model

    if resume_dir:
        result = resume(resume_dir, epochs=options["epochs"], device=options["device"], workers=options["workers"])
    else:
        if options["dataset"]:
            kind = options["dataset"]
        elif options["data"] or options["train_dir"] or options["test_dir"]:
            kind = "folder"
        else:
            kind = "builtin"
        options.pop("dataset")
        if options["out"] is None:
            options["out"] = f"runs/{kind}-{options['bits'] or 64}bit"
        result = train_model(resolve_config(kind, options))
    click.echo(summary(result))


def summary(result) -> str:
    from hashpa.train.trainer import RECALL_KS

    lines = [f"\nRun directory: {result.run_dir}"]
    best = result.best
    record = next((r for r in result.history if r["epoch"] == best.get("epoch") and r.get("stage") == best.get("stage")), None)
    if record is None:
        return "\n".join(lines + ["No evaluation ran yet."])
    after = " after the code stage" if best.get("stage") == "codes" else ""
    lines.append(f"Best: epoch {best['epoch']}{after} (by {best['metric']}):")
    header = "  " + " " * 14 + "".join(f"{'Recall@' + str(k):>10}" for k in RECALL_KS) + f"{'MAP@R':>10}"
    lines.append(header)
    for name in ("float", "codes"):
        metrics = record[name]
        values = "".join(f"{metrics[f'recall@{k}']:>10.4f}" if f"recall@{k}" in metrics else f"{'-':>10}" for k in RECALL_KS)
        values += f"{metrics['map@r']:>10.4f}"
        lines.append(f"  {name:<14}{values}")
    if result.skipped_images:
        lines.append(f"Skipped {result.skipped_images} unreadable images (see the warnings above).")
    lines.append(f"Files: config.json, history.jsonl, best.pt, last.pt in {result.run_dir}")
    lines.append(f"Next: hashpa index IMAGE_FOLDER --model {result.run_dir} --out INDEX_DIR")
    return "\n".join(lines)
