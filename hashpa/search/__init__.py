"""Searching an index: the modes (float, binary, rerank, asymmetric), the asymmetric kernels, the
public ``open_index`` and the query front end of ``hashpa search``."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".modes": "MODES SearchResult",
    ".index": "Index open_index",
    ".queries": "Hit QueryResult expand_queries search",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
