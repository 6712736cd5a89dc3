"""Retrieval metrics and exact k-NN, with one ranking rule (``ranking``: distance, then id)."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".retrieval": "RECALL_KS evaluate_retrieval model_scores recall_at_k retrieval_scores",
    ".knn": "exact_knn",
    ".ranking": "merge_candidates top_k",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
