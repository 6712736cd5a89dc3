"""Searching an index: the modes (float, binary, rerank, asymmetric), the asymmetric kernels, the
public ``open_index`` and the query front end of ``hashpa search``."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "MODES": ".modes",
    "SearchResult": ".modes",
    "Index": ".index",
    "open_index": ".index",
    "Hit": ".queries",
    "QueryResult": ".queries",
    "expand_queries": ".queries",
    "search": ".queries",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
