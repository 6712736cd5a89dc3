"""The lines a training run logs: its data and settings, each epoch's loss and recalls, the start's, the code stage's."""

from __future__ import annotations

import logging

from hashpa.data.retrieval_split import RetrievalSplit
from hashpa.metrics.retrieval import RECALL_KS
from hashpa.runs.config import RECIPE_PURPOSES, TrainConfig

log = logging.getLogger(__name__)


def announce(split: RetrievalSplit, unusable: list[tuple[str, str]], config: TrainConfig, input_size: int, device) -> None:
    """A run's first lines: the files left out, the data and its split, the settings."""
    if unusable:
        shown = "; ".join(f"{path} ({why})" for path, why in unusable[:3])
        log.warning("%d image files cannot be read and are left out: %s%s", len(unusable), shown, " ..." if len(unusable) > 3 else "")
    log.info("data: %s: %s", split.description, split.summary())
    recipe = f"preset {config.preset} ({RECIPE_PURPOSES[config.preset]})" if config.preset in RECIPE_PURPOSES else "no preset"
    model = config.model
    log.info("settings: %s; %s (%s weights) at %d px, %d epochs, batch %d, %d-bit codes, %d-d embedding, on %s",
             recipe, model.backbone, model.weights, input_size, config.epochs, config.batch_size, model.bits, model.dim, device)


def epoch_line(record: dict, epochs: int) -> str:
    line = f"epoch {record['epoch']}/{epochs}: loss {record['loss']['total']:.4f}, {record['images_per_second']:.0f} img/s"
    if "float" in record:
        line += (
            f" | Recall@1/2/4/8 float {recalls(record['float'])}"
            f" | codes {recalls(record['codes'])}"
        )
    return line


def start_line(record: dict, bits: int) -> str:
    itq = f", PCA-ITQ of them ({bits} bits) {recalls(record['features_itq'])}" if "features_itq" in record else ""
    return (f"epoch 0 (the start, {record['seconds']:.0f} s): Recall@1/2/4/8 float {recalls(record['float'])} | codes {recalls(record['codes'])}"
            f" | the backbone's pooled features {recalls(record['features'])}{itq}")


def warn_code_stage_skipped(bits: int, images: int) -> None:
    log.warning("code stage skipped: it starts from PCA-ITQ, which needs more than %d training images, found %d; "
                "the jointly trained hash head is kept", bits, images)


def code_stage_line(record: dict) -> str:
    stage = record["code_stage"]
    chosen = f", {stage['validation']['epochs']} epochs chosen on held-out images" if stage.get("validation") else ""
    line = f"code stage ({stage['objective']}{chosen}, {stage['steps']} steps, {record['seconds']:.0f} s)"
    if "codes" not in record:  # not evaluated (--eval-every 0)
        return line
    return f"{line} | Recall@1/2/4/8 float {recalls(record['float'])} | codes {recalls(record['codes'])}"


def recalls(metrics: dict) -> str:
    return "/".join(f"{metrics[f'recall@{k}']:.3f}" if f"recall@{k}" in metrics else "-" for k in RECALL_KS)
