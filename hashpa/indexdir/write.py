"""Writing an index directory: a new generation (the store and its FAISS indexes), published by
replacing index.json, older generations retired (``generations``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hashpa import __version__
from hashpa.errors import HashpaError
from hashpa.fileio import check_free_space, checksum
from hashpa.indexdir.faiss_files import build_faiss_index, write_faiss
from hashpa.indexdir.generations import new_generation, retire_unused
from hashpa.indexdir.layout import DEFAULT_INDEXES, INDEX_JSON, STORE_FILE, IndexMeta, index_file_name, index_key, read_meta, write_meta
from hashpa.indexdir.store import Store, write_store
from hashpa.paths import recorded

log = logging.getLogger(__name__)


def write_index_dir(out: str | Path, store: Store, float_specs=DEFAULT_INDEXES["float"], binary_specs=DEFAULT_INDEXES["binary"],
                    source: dict | None = None) -> dict:
    """Write `store` and its FAISS indexes as a new generation of the index directory `out`, publish
    it by replacing index.json, then remove older generations no reader holds (``generations``);
    returns the indexes built.

    Every FAISS index is built, and the free space checked, before anything is written, so a bad
    factory string or a full disk leaves an existing index as it was; searches running meanwhile
    answer from the old generation. `store.attrs["model_fingerprint"]` names the model; `source`
    gives the indexed "folder", the "model" and its "checkpoint" for index.json (defaults: the
    store's root, unknown). No file hashpa did not write is deleted.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = {"float": store.embeddings, "binary": store.index_codes}
    made = {(kind, spec): build_faiss_index(kind, data[kind], spec) for kind, specs in (("float", float_specs), ("binary", binary_specs))
            for spec in dict.fromkeys(specs)}
    build_seconds = round((time.perf_counter() - started) / max(len(made), 1), 3)
    check_free_space(out, _bytes_needed(store, made), "the index", largest=_store_bytes(store))
    previous = current_meta(out, damaged_ok=True)  # build_index refused a damaged one unless it replaces it
    generation = new_generation()
    store_file = f"{generation}/{STORE_FILE}"
    store_id = write_store(out / store_file, store)
    files = {store_file: checksum(out / store_file)}
    built = {}
    for (kind, spec), faiss_index in made.items():
        name = f"{generation}/{index_file_name(kind, spec)}"
        write_faiss(faiss_index, out / name)
        files[name] = checksum(out / name)
        built[index_key(kind, spec)] = {"kind": kind, "spec": spec, "file": name, "ntotal": int(faiss_index.ntotal),
                                        "bytes": files[name]["bytes"], "build_seconds": build_seconds}
    source = source or {}
    folder, folder_from_index = recorded(source.get("folder") or store.attrs.get("root") or out, out)
    model, model_from_index = recorded(source["model"], out) if source.get("model") else ("", "")
    meta = IndexMeta(
        model=model, model_from_index=model_from_index, checkpoint=source.get("checkpoint", "best"),
        model_fingerprint=store.attrs.get("model_fingerprint", ""),
        folder=folder, folder_from_index=folder_from_index, store_id=store_id, rows=len(store), bits=store.bits,
        code_source=store.code_source, dim=int(store.embeddings.shape[1]), embeddings_dtype=str(store.embeddings.dtype),
        labels=store.has_labels, class_depth=int(store.attrs.get("class_depth", 0)), rerank_codes=store.rerank_codes, indexes=built, files=files,
        store=store_file,
        hashpa_version=__version__,
    )
    write_meta(out, meta)
    retire_unused(out, meta, previous)
    return built


def _bytes_needed(store: Store, made: dict) -> int:
    """About what writing `store` and the FAISS indexes `made` takes on disk."""
    faiss_bytes = sum(index.ntotal * (index.code_size if hasattr(index, "code_size") else 0) for index in made.values())
    return int(_store_bytes(store) + faiss_bytes + 2**20)


def _store_bytes(store: Store) -> int:
    """About the size of the store file: its vectors, paths and per-row numbers, and HDF5's own overhead."""
    vectors = store.embeddings.nbytes + store.codes.nbytes + (store.fitted.codes.nbytes if store.fitted else 0)
    vectors += store.compressed.nbytes if store.compressed else 0
    return int(vectors + sum(len(path) for path in store.paths) + 64 * len(store) + 2**16)


def current_meta(out: Path, damaged_ok: bool = False) -> IndexMeta | None:
    """The index directory's current index.json (None when it has none). A damaged or forged one is a
    HashpaError, or with `damaged_ok` None after a warning: what it names is never acted on."""
    if not (Path(out) / INDEX_JSON).exists():
        return None
    try:
        return read_meta(out)
    except HashpaError as error:
        if not damaged_ok:
            raise HashpaError(f"{error}; or pass --replace to hashpa index to rebuild it from the images") from None
        log.warning("%s: nothing it names is used or removed", error)
        return None
