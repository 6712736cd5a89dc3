"""The FAISS indexes of an index directory: made from factory strings, written atomically, read back
and checked against the checksum recorded when they were written."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from hashpa.errors import HashpaError
from hashpa.fileio import atomic_path

OPTIONS = {"float": "--float-index", "binary": "--binary-index"}


def make_faiss_index(kind: str, spec: str, width: int, rows: int):
    """An empty FAISS index of `kind` ("float": inner product over `width` dimensions; "binary":
    Hamming over `width` bits) from a factory string, checked to be trainable on `rows` vectors."""
    import faiss

    try:
        if kind == "float":
            index = faiss.index_factory(width, spec, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.index_binary_factory(width, spec)
    except RuntimeError as error:
        hint = "; try Flat, HNSW32 or IVF256,Flat" if kind == "float" else "; try BFlat, BHNSW32 or BIVF256"
        raise HashpaError(f"{OPTIONS[kind]} {spec!r} is not a FAISS {kind} factory string FAISS accepts ({_faiss_message(error)}){hint}") from None
    nlist, centroids = getattr(index, "nlist", 0), getattr(getattr(index, "pq", None), "ksub", 0)
    if not index.is_trained and nlist and rows < nlist:
        raise HashpaError(f"{OPTIONS[kind]} {spec} needs at least {nlist} vectors to train its {nlist} lists, "
                          f"the folder has {rows}: use fewer lists or Flat")
    if not index.is_trained and rows < centroids:
        raise HashpaError(f"{OPTIONS[kind]} {spec} needs at least {centroids} vectors to train the {centroids} centroids of its "
                          f"product quantiser, the folder has {rows}: use Flat, or fewer bits per sub-quantiser (PQ8x4np)")
    return index


ADD_ROWS = 65536  # rows converted and added at a time when the data is not already in FAISS's dtype


def build_faiss_index(kind: str, data: np.ndarray, spec: str):
    """A FAISS index of `kind` holding `data` with ids = rows: L2-normalised float rows [N, dim]
    (float32 or float16; inner product is then cosine) or packed uint8 codes [N, bits/8]. Data
    not already contiguous in FAISS's dtype is converted ADD_ROWS at a time, never as a whole."""
    dtype = np.float32 if kind == "float" else np.uint8
    index = make_faiss_index(kind, spec, data.shape[1] * (8 if kind == "binary" else 1), len(data))
    as_is = data.dtype == dtype and data.flags.c_contiguous
    if not index.is_trained:
        try:
            index.train(data if as_is else np.ascontiguousarray(data, dtype=dtype))
        except RuntimeError as error:  # what make_faiss_index cannot foresee (e.g. a transform's training)
            raise HashpaError(f"FAISS could not train {OPTIONS[kind]} {spec} on {len(data)} vectors ({_faiss_message(error)}); "
                              "use Flat, or an index that trains on fewer vectors") from None
    if as_is:
        index.add(data)
    else:
        for start in range(0, len(data), ADD_ROWS):
            index.add(np.ascontiguousarray(data[start : start + ADD_ROWS], dtype=dtype))
    return index


def write_faiss(index, path: Path) -> None:
    """Write `index` atomically. FAISS's bytes pass through a Python file, so that a write that fails
    (a full disk) is an error here rather than a short file FAISS does not notice."""
    import faiss

    writer = faiss.write_index_binary if isinstance(index, faiss.IndexBinary) else faiss.write_index
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer(index, faiss.PyCallbackIOWriter(handle.write))
        handle.flush()


def read_faiss(kind: str, path: Path, recorded: dict | None, fix: str):
    """The FAISS index in `path`, after checking its bytes against `recorded` ({"bytes", "crc32"}, when the index has one)."""
    import faiss

    try:
        data = path.read_bytes()
    except OSError as error:
        raise HashpaError(f"cannot read the FAISS index {path} ({error}); {fix}") from None
    if recorded and (len(data) != recorded["bytes"] or f"{zlib.crc32(data):08x}" != recorded["crc32"]):
        raise HashpaError(f"{path} does not match the checksum recorded when it was written (damaged or changed); {fix}")
    reader = faiss.deserialize_index_binary if kind == "binary" else faiss.deserialize_index
    try:
        return reader(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as error:
        raise HashpaError(f"cannot read the FAISS index {path} ({_faiss_message(error)}); {fix}") from None


def _faiss_message(error: Exception) -> str:
    """FAISS's own words of `error`, without the C++ function and location it starts with."""
    line = str(error).strip().splitlines()[-1]
    line = re.sub(r"^Error in .*? at \S+:\d+: ", "", line)
    return re.sub(r"^Error: '.*?' failed: ", "", line)[:200]
