"""When a database item is relevant to a query, written once for every metric: single labels
(int [N], -1 for unlabelled, which is never relevant) must be equal; multi-labels (a multi-hot
matrix, bool or 0/1 [N, C]) must share at least one label."""

from __future__ import annotations

import numpy as np

from hashpa.errors import HashpaError


def check_labels(labels, n: int, what: str) -> np.ndarray:
    """`labels` as int [n] single labels or bool [n, C] multi-labels, or a HashpaError naming `what`."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[0] == n:
        if labels.dtype == bool:
            return labels
        if np.issubdtype(labels.dtype, np.integer) and np.isin(labels, (0, 1)).all():
            return labels.astype(bool)
        raise HashpaError(f"{what}: multi-labels must be a multi-hot matrix [{n}, classes] of 0/1 or bool, got {labels.dtype}")
    if labels.shape != (n,):
        raise HashpaError(f"{what} must have shape [{n}] (one class per item) or [{n}, classes] (multi-hot), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise HashpaError(f"{what} must be integers, got {labels.dtype}")
    return labels


def is_multi_label(labels: np.ndarray) -> bool:
    return labels.ndim == 2


def relevant(query_labels: np.ndarray, database_labels: np.ndarray) -> np.ndarray:
    """bool [Q, N]: whether database item j is relevant to query i (labels from ``check_labels``)."""
    if is_multi_label(query_labels) != is_multi_label(database_labels):
        raise HashpaError("queries and database must both have single labels or both multi-labels")
    if is_multi_label(query_labels):
        if query_labels.shape[1] != database_labels.shape[1]:
            raise HashpaError(f"queries have {query_labels.shape[1]} label columns, the database {database_labels.shape[1]}")
        return (query_labels.astype(np.float32) @ database_labels.T.astype(np.float32)) > 0
    return (query_labels[:, None] == database_labels[None, :]) & (query_labels[:, None] >= 0)


def has_label(labels: np.ndarray) -> np.ndarray:
    """bool [N]: which items carry a label at all."""
    return labels.any(axis=1) if is_multi_label(labels) else labels >= 0


def relevant_at(query_labels: np.ndarray, database_labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """bool [Q, k]: whether database row ids[i, j] is relevant to query i (an id < 0, a missing
    result, never is)."""
    found = database_labels[np.maximum(ids, 0)]
    if is_multi_label(query_labels):
        related = (found & query_labels[:, None, :]).any(axis=2)
    else:
        related = (found == query_labels[:, None]) & (query_labels[:, None] >= 0)
    return related & (ids >= 0)


def relevant_counts(query_labels: np.ndarray, database_labels: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """int64 [Q]: how many database items are relevant to each query."""
    if not is_multi_label(query_labels):
        known = database_labels[database_labels >= 0]
        counts = np.bincount(known, minlength=max(int(database_labels.max(initial=-1)), int(query_labels.max(initial=-1)), 0) + 1)
        return np.where(query_labels >= 0, counts[np.maximum(query_labels, 0)], 0).astype(np.int64)
    return np.concatenate([relevant(query_labels[start : start + chunk], database_labels).sum(axis=1)
                           for start in range(0, len(query_labels), chunk)] or [np.zeros(0, np.int64)]).astype(np.int64)
