"""The hash head's two fittings as steps of a run: its PCA-ITQ start after the warm-up (computed by
rank 0, given to every rank), and the code stage after the last epoch (``code_stage``), with the
settings, the checks and the log lines around them."""

from __future__ import annotations

import logging
import time

import torch

from hashpa.data.retrieval_split import RetrievalSplit
from hashpa.distributed import broadcast_module, is_main_process
from hashpa.models.hashing_model import HashingModel
from hashpa.quantizers import enough_rows
from hashpa.runs.config import TrainConfig
from hashpa.training.code_stage import CodeStageSettings, choose_objective, code_features, fit_code_stage, start_head_from_itq
from hashpa.training.progress import warn_code_stage_skipped

log = logging.getLogger(__name__)


def start_hash_head(network: HashingModel, split: RetrievalSplit, config: TrainConfig, device: torch.device) -> None:
    """The hash head set to PCA-ITQ of what it reads for the training images."""
    started = time.perf_counter()
    log.info("hash head start: PCA-ITQ of what it reads for the %d training images", len(split.train))
    network.eval()
    started_from_itq = start_head_from_itq(network, split.train, device, config.workers, config.seed) if is_main_process() else True
    broadcast_module(network.hash_head)
    network.train()
    if started_from_itq:
        log.info("hash head initialised from PCA-ITQ of the %d training images (%.1f s)", len(split.train), time.perf_counter() - started)
    else:
        log.warning("too few readable training images for PCA-ITQ of %d bits: the hash head keeps its random initialisation", config.model.bits)


def run_code_stage(network: HashingModel, split: RetrievalSplit, config: TrainConfig, device: torch.device, epoch: int) -> dict | None:
    """The code stage on the network as it is after `epoch`: its summary (``fit_code_stage``), or None
    (with a warning, the head kept as it is) when too few training images could be read."""
    bits = config.model.bits
    if not enough_rows(len(split.train), bits):  # before embedding anything; unreadable images are counted below
        warn_code_stage_skipped(bits, len(split.train))
        return None
    features = code_features(network, split.train, config.code_views, (config.crop_scale_min, 1.0), config.hflip, device,
                             max(config.batch_size, 64), config.workers, config.seed * 1000 + epoch)
    if not enough_rows(features.plain_rows, bits):
        warn_code_stage_skipped(bits, features.plain_rows)
        return None
    settings = CodeStageSettings(
        objective=choose_objective(config.code_objective, split.train_classes, split.test_classes),
        epochs=config.code_epochs, lr=config.code_lr, proxy_lr=config.code_lr * config.proxy_lr_mult, weight_decay=config.weight_decay,
        batch_size=config.batch_size, alpha=config.code_alpha, margin=config.code_margin, temperature=config.distill_temperature,
        seed=config.seed, validation=config.code_validation,
    )
    return fit_code_stage(network.hash_head, features, len(split.train_classes), settings)
