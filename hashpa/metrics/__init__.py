"""Retrieval metrics and exact k-NN, with one ranking rule (``ranking``: distance, then id).

``evaluate_retrieval`` computes every Recall@K, MAP@R and mAP figure in one pass; ``recall_at_k``
is its Recall@K alone; ``hashing_scores`` adds the deep-hashing protocol (mAP@ALL, P@K, P@H<=2,
precision-recall curves)."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".retrieval": "RECALL_KS evaluate_retrieval recall_at_k",
    ".hashing": "hashing_scores",
    ".knn": "exact_knn",
    ".ranking": "merge_candidates top_k",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
