"""Index directories: their layout and schema, the HDF5 store, building and updating them, opening them."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "CODE_SOURCES": ".layout",
    "INDEX_JSON": ".layout",
    "STORE_FILE": ".layout",
    "IndexMeta": ".layout",
    "index_key": ".layout",
    "read_meta": ".layout",
    "FittedCodes": ".store",
    "Store": ".store",
    "read_store": ".store",
    "write_store": ".store",
    "IndexSettings": ".settings",
    "IndexSummary": ".build",
    "build_index": ".build",
    "fit_database_codes": ".build",
    "write_index_dir": ".build",
    "IndexDir": ".open",
    "info": ".facts",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
