"""What a run's settings must fit before training starts: the batch to the data, the hash head's
PCA-ITQ start to its inputs, the losses to multi-label data."""

from __future__ import annotations

import logging
import math

from hashpa.data.retrieval_split import RetrievalSplit
from hashpa.distributed import world_size
from hashpa.errors import HashpaError
from hashpa.losses.registry import MULTI_LABEL_LOSSES
from hashpa.methods import HASHPA, method
from hashpa.models.hashing_model import HashingModel
from hashpa.runs.config import TrainConfig

log = logging.getLogger(__name__)


def fit_batch_to_data(config: TrainConfig, split: RetrievalSplit) -> None:
    """A training set smaller than the batch trains with the largest batch it fills (a multiple of
    --per-class and of the processes); config.batch_size is set to it."""
    images = len(split.train)
    if config.batch_size % world_size():
        raise HashpaError(f"--batch-size {config.batch_size} is the global batch of all {world_size()} processes: "
                          f"make it a multiple of {world_size()}")
    if images >= config.batch_size:
        return
    step = config.per_class * world_size() // math.gcd(config.per_class, world_size()) if config.per_class else world_size()
    fitted = images - images % step
    if fitted < 2:
        raise HashpaError(f"{split.description}: {images} training images cannot form a batch (--per-class {config.per_class})")
    log.info("the training split has %d images, fewer than --batch-size %d: training with batches of %d", images, config.batch_size, fitted)
    config.batch_size = fitted


def check_itq_possible(config: TrainConfig, network: HashingModel) -> None:
    """PCA-ITQ (the head's start after the warm-up and in the code stage) needs at least as many input dimensions as bits."""
    inputs = network.hash_head.in_features
    if not network.hash_head.projects:
        if config.hash_init == "itq" or config.code_epochs:
            log.info("the codes are the signs of the embedding itself (--no-hash-projection): no hash projection to start "
                     "from PCA-ITQ or to fit in a code stage")
        return
    if (config.hash_init == "itq" or config.code_epochs) and inputs < config.model.bits:
        raise HashpaError(
            f"--bits {config.model.bits} is more than the {inputs} dimensions the hash head reads: its PCA-ITQ start needs "
            f"at least as many; raise --dim to {config.model.bits} or more, or pass --hash-source features, "
            "or --hash-init random --code-epochs 0"
        )


def check_multi_label(config: TrainConfig, split: RetrievalSplit, network: HashingModel) -> None:
    """Multi-label data trains with the losses that take multi-labels; its code stage is skipped."""
    if config.method == HASHPA:
        losses = (("--loss", config.loss, config.loss), ("--code-loss", config.code_loss, config.code_loss))
    else:
        losses = (("--method", config.method, method(config.method).loss),)
    unable = [f"{flag} {name}" for flag, name, loss in losses if loss not in MULTI_LABEL_LOSSES]
    if unable:
        raise HashpaError(f"{split.description} is multi-label: {' and '.join(unable)} take one class per image; "
                          f"use the losses {', '.join(MULTI_LABEL_LOSSES)}")
    if config.code_epochs and network.hash_head.projects:
        log.info("multi-label data: the code stage (which holds out classes and starts proxies at class means) is skipped; "
                 "the codes are the jointly trained head's")
