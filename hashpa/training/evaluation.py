"""Evaluations during training: the test split's Recall@K and MAP@R after an epoch, and epoch 0,
the starting model beside its backbone's own features (the baseline training must beat)."""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import torch

from hashpa.data.retrieval_split import RetrievalSplit
from hashpa.devices import distance_device
from hashpa.distributed import is_main_process
from hashpa.embed import embed_all, embed_labelled
from hashpa.errors import HashpaError
from hashpa.metrics.retrieval import model_scores
from hashpa.models.hashing_model import HashingModel
from hashpa.training.start import start_scores

log = logging.getLogger(__name__)


class RunEvaluation:
    """Evaluates `model` on `split`'s test images (queries, and the gallery when it has one); the
    files it could not read collect in `unreadable`. `diverged(what)` makes the error for
    non-finite outputs."""

    def __init__(self, network: HashingModel, split: RetrievalSplit, device: torch.device, bits: int, batch_size: int, workers: int,
                 diverged: Callable[[str], HashpaError]):
        self.network, self.split, self.device, self.bits = network, split, device, bits
        self.loader = dict(batch_size=max(batch_size, 64), workers=workers)
        self.diverged = diverged
        self.unreadable: set[str] = set()

    def scores(self, epoch: int) -> dict:
        """Recall@K, tie-aware Recall@K (codes) and MAP@R of the float embeddings and the codes."""
        started = time.perf_counter()
        queries, gallery = self._embed_test("embed", epoch)
        results = model_scores(queries, gallery, distance_device(self.device))
        results["eval_seconds"] = round(time.perf_counter() - started, 3)
        return results

    def start(self) -> dict:
        """Epoch 0's record: the starting model's float embeddings and codes, and the backbone's own
        pooled features with PCA-ITQ codes of them (``start_scores``)."""
        started = time.perf_counter()
        log.info("epoch 0: evaluating the starting model and its backbone's features (the baseline)")
        queries, gallery = self._embed_test("embed_and_features", 0)
        train = embed_all(self.network, self.split.train, self.device, output="features", progress="training images' features", **self.loader)[0]
        self.network.train()
        record = {"epoch": 0, "stage": "start", **model_scores(queries, gallery, distance_device(self.device)),
                  **start_scores(train, queries, gallery, self.bits, distance_device(self.device))}
        record["seconds"] = round(time.perf_counter() - started, 3)
        return record

    def _embed_test(self, output: str, epoch: int):
        """(queries, gallery or None) of the test split embedded as `output` says; unreadable files are noted."""
        classes = len(self.split.test_classes)
        queries = embed_labelled(self.network, self.split.test, self.device, classes, progress="evaluating" if is_main_process() else None,
                                 output=output, **self.loader)
        gallery = None if self.split.gallery is None else embed_labelled(self.network, self.split.gallery, self.device, classes, output=output,
                                                                          **self.loader)
        for samples, embedded in ((self.split.test, queries), (self.split.gallery, gallery)):
            if embedded is not None:
                self.unreadable.update(str(samples[i].path) for i in set(range(len(samples))) - set(embedded.positions.tolist()))
                if not np.isfinite(embedded.embeddings).all():
                    raise self.diverged(f"the model's outputs on the test images became NaN or infinite (epoch {epoch + 1})")
        self.network.train()
        return queries, gallery
