"""Retrieval metrics and exact k-NN, with one ranking rule (``ranking``: distance, then id)."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "RECALL_KS": ".retrieval",
    "evaluate_retrieval": ".retrieval",
    "model_scores": ".retrieval",
    "recall_at_k": ".retrieval",
    "retrieval_scores": ".retrieval",
    "exact_knn": ".knn",
    "merge_candidates": ".ranking",
    "top_k": ".ranking",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
