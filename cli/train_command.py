"""``hashpa train``, ``hashpa eval`` and ``hashpa builtin-path``."""

from __future__ import annotations

import click

from hashpa.cli.main import cli, echo_json, friendly_errors, json_option, overwrite_option
from hashpa.cli.options import setting_options, shown
from hashpa.models.config import ModelConfig
from hashpa.runs.config import DATA_SETTINGS, PRESETS, TrainConfig
from hashpa.runs.directory import CHECKPOINTS
from hashpa.settings import SettingInfo


def default_with_presets(info: SettingInfo) -> str:
    """A setting's default, and the dataset kinds whose preset changes it."""
    default = "runs/<dataset>-<bits>bit" if info.name == "out" else shown(info, info.default)
    changed = [f"{kind}: {shown(info, _preset_value(preset, info.name))}" for kind, preset in PRESETS.items()
               if _preset_value(preset, info.name) not in (None, info.default)]
    return ", ".join(filter(None, [default, *changed]))


def _preset_value(preset: dict, name: str):
    return preset.get(name, preset.get("model", {}).get(name))


@cli.command("builtin-path")
@friendly_errors
def builtin_path() -> None:
    """Print the built-in dataset's folder (writing it on first use)."""
    from hashpa.data.builtin import builtin_dataset

    click.echo(builtin_dataset())


@cli.command(epilog="Every setting can also come from --config FILE (TOML, YAML or JSON, flat or with a [model] table); "
                    "options given here override the file, which overrides the dataset kind's preset.")
@setting_options([TrainConfig, ModelConfig], defaults=default_with_presets)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="Settings file (TOML, YAML or JSON).")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue the run in this directory (its own settings are kept, but --epochs, --device and --workers).")
@friendly_errors
def train(config_file, resume_dir, **options) -> None:
    """Train Proxy Anchor float embeddings and hash codes; write a run directory."""
    from hashpa.report.tables import train_summary
    from hashpa.runs.config import resolve_config
    from hashpa.training.trainer import resume
    from hashpa.training.trainer import train as train_model

    if resume_dir:
        result = resume(resume_dir, epochs=options["epochs"], device=options["device"], workers=options["workers"])
    else:
        result = train_model(resolve_config(options, config_file))
    if result is not None:  # None: another rank of torchrun's; rank 0 reports
        click.echo(train_summary(result))


@cli.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", type=click.Choice(CHECKPOINTS), default="best", show_default=True)
@setting_options([TrainConfig], only=set(DATA_SETTINGS), defaults=lambda info: "the run's own")
@click.option("--baselines", is_flag=True, help="Also LSH and PCA-ITQ codes of the float embedding, fitted to the training images, "
                                                "and PCA-ITQ fitted to the test photos (with its asymmetric search).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--workers", type=int, help="DataLoader worker processes (default: the run's).")
@click.option("--out", type=click.Path(file_okay=False), help="Also write eval.json, eval.md and eval-pr.png to this folder.")
@overwrite_option
@json_option
@friendly_errors
def evaluate(run_dir, as_json, **options) -> None:
    """Float embeddings vs hash codes of a trained run on a test split: Recall@K, MAP@R and the deep-hashing protocol
    (mAP@1000, mAP@ALL, P@K, P@H<=2, precision-recall curves)."""
    from hashpa.report.evaluation import evaluate as run_evaluate
    from hashpa.report.tables import eval_table

    report = run_evaluate(run_dir, **options)
    if as_json:
        echo_json(report)
        return
    click.echo(eval_table(report))
    if options["out"]:
        written = "eval.json and eval.md" if "skipped" in report["hashing"] else "eval.json, eval.md and eval-pr.png"
        click.echo(f"wrote {written} in {options['out']}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="The ONNX file to write (default: RUN_DIR/model.onnx); its card goes beside it, as OUT.json.")
@click.option("--checkpoint", type=click.Choice(CHECKPOINTS), default="best", show_default=True)
@overwrite_option
@json_option
@friendly_errors
def export(run_dir, out, checkpoint, overwrite, as_json) -> None:
    """Export a trained run's model as ONNX (embeddings and hash logits, dynamic batch) with its preprocessing and code rule beside it."""
    from hashpa.export import export as export_model

    summary = export_model(run_dir, out, checkpoint, overwrite)
    if as_json:
        echo_json({"model": str(summary.model), "card": str(summary.card), "bytes": summary.bytes,
                   "embedding_difference": summary.embedding_difference, "logit_difference": summary.logit_difference})
        return
    click.echo(f"Exported {run_dir} to {summary.model} ({summary.bytes:,} bytes) and {summary.card.name}; onnxruntime reproduces torch "
               f"within {max(summary.embedding_difference, summary.logit_difference):.1e}")
