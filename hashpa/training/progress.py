"""The lines a training run logs: each epoch's loss and recalls, the start's, the code stage's."""

from __future__ import annotations

import logging

from hashpa.metrics.retrieval import RECALL_KS

log = logging.getLogger("hashpa.training.trainer")


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
    return (f"code stage ({stage['objective']}{chosen}, {stage['steps']} steps, {record['seconds']:.0f} s)"
            f" | Recall@1/2/4/8 float {recalls(record['float'])} | codes {recalls(record['codes'])}")


def recalls(metrics: dict) -> str:
    return "/".join(f"{metrics[f'recall@{k}']:.3f}" if f"recall@{k}" in metrics else "-" for k in RECALL_KS)
