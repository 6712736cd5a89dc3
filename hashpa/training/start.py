"""Epoch 0: what the starting model offers before any training, the baseline a run must beat."""

from __future__ import annotations

import numpy as np

from hashpa.embed import Embedded
from hashpa.metrics.retrieval import RECALL_KS, retrieval_scores
from hashpa.quantizers import enough_rows, fit_itq


def start_scores(train_features: np.ndarray, queries: Embedded, gallery: Embedded | None, bits: int, device: str | None = None) -> dict:
    """{"features": scores of the backbone's pooled features (cosine), "features_itq": scores of
    `bits`-bit PCA-ITQ codes of them fitted on the training images (when there are more training
    images than bits)}, each query searching the gallery, or the other queries without one.
    train_features float [Nt, C]; queries and gallery carry their pooled `features`."""
    database = None if gallery is None else gallery.features
    database_labels = None if gallery is None else gallery.labels

    def scores(x: np.ndarray, searched: np.ndarray | None, metric: str) -> dict:
        return retrieval_scores(x, queries.labels, searched, database_labels, metric=metric, ks=RECALL_KS)

    record = {"features": scores(queries.features, database, "cosine")}
    if enough_rows(len(train_features), bits) and train_features.shape[1] >= bits:
        hasher = fit_itq(train_features, bits)
        record["features_itq"] = scores(hasher.encode(queries.features), None if gallery is None else hasher.encode(gallery.features), "hamming")
    return record
