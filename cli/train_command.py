"""``hashpa train``, ``hashpa eval`` and ``hashpa builtin-path``."""

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


def data_options(default: str):
    """The options that choose the data (train and eval); `default` says what is used without them."""
    options = [
        click.option("--data", type=click.Path(file_okay=False), help=f"Image folder, one sub-folder per class. Default: {default}."),
        click.option("--dataset", type=click.Choice(DATASETS), help="One of the paper's datasets, read from --root."),
        click.option("--root", type=click.Path(file_okay=False), help="Folder holding --dataset."),
        click.option("--split", type=click.Choice(["half", "seen"]),
                     help="half: first half of the classes trains, the rest tests (unseen classes); seen: hold out part of every class."),
        click.option("--train-dir", type=click.Path(file_okay=False), help="Explicit training folder (with --test-dir)."),
        click.option("--test-dir", type=click.Path(file_okay=False), help="Explicit test folder (with --train-dir)."),
        click.option("--test-fraction", type=float, help="With --split seen: fraction of each class held out."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@cli.command()
@data_options("the built-in dataset")
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
@click.option("--code-validation", type=float,
              help="Fraction of training images (classes, for distill) held out to choose the code stage's epochs (0: all epochs).")
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


@cli.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@data_options("the run's own test split")
@click.option("--baselines", is_flag=True, help="Also LSH and PCA-ITQ codes of the float embedding, fitted to the training images.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--workers", type=int, help="DataLoader worker processes (default: the run's).")
@click.option("--out", type=click.Path(file_okay=False), help="Also write eval.json and eval.md to this folder.")
@friendly_errors
def evaluate(run_dir, **options) -> None:
    """Float embeddings vs hash codes of a trained run on a test split: Recall@K and MAP@R."""
    from hashpa.eval.evaluate import evaluate as run_evaluate
    from hashpa.eval.evaluate import markdown

    report = run_evaluate(run_dir, **options)
    click.echo(markdown(report))
    if options["out"]:
        click.echo(f"wrote eval.json and eval.md in {options['out']}")
