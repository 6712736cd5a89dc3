"""Index directories: their layout and schema, the HDF5 store, building and updating them, opening them."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".layout": "CODE_SOURCES INDEX_JSON STORE_FILE IndexMeta index_key read_meta",
    ".store": "FittedCodes Store read_store write_store",
    ".settings": "IndexSettings",
    ".build": "IndexSummary build_index fit_database_codes",
    ".write": "write_index_dir",
    ".open": "IndexDir",
    ".facts": "info",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
