"""The FAISS indexes of an index directory: built from factory strings, written atomically, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashpa.errors import HashpaError
from hashpa.fileio import atomic_path

OPTIONS = {"float": "--float-index", "binary": "--binary-index"}


def build_faiss_index(kind: str, data: np.ndarray, spec: str):
    """A FAISS index of `kind` from a factory string, holding `data` with ids = rows.

    kind "float": inner product (Flat, HNSW32, IVF256,Flat, ...) over float32 [N, dim] L2-normalised
    rows (so inner product is cosine); "binary": Hamming (BFlat, BHNSW32, BIVF256, ...) over packed
    uint8 codes [N, bits/8].
    """
    import faiss

    if kind == "float":
        x = np.ascontiguousarray(data, dtype=np.float32)
        make = lambda: faiss.index_factory(x.shape[1], spec, faiss.METRIC_INNER_PRODUCT)  # noqa: E731
        hint = ""
    else:
        x = np.ascontiguousarray(data, dtype=np.uint8)
        make = lambda: faiss.index_binary_factory(x.shape[1] * 8, spec)  # noqa: E731
        hint = "; try BFlat, BHNSW32 or BIVF256"
    try:
        index = make()
    except RuntimeError as error:
        raise HashpaError(f"{OPTIONS[kind]} {spec!r} is not a FAISS {kind} factory string FAISS accepts ({_first_line(error)}){hint}") from None
    if not index.is_trained:
        nlist = getattr(index, "nlist", 0)
        if nlist and len(x) < nlist:
            raise HashpaError(f"{OPTIONS[kind]} {spec} needs at least {nlist} vectors to train its {nlist} lists, "
                              f"the folder has {len(x)}: use fewer lists or Flat")
        index.train(x)
    index.add(x)
    return index


def write_faiss(index, path: Path) -> None:
    import faiss

    writer = faiss.write_index_binary if isinstance(index, faiss.IndexBinary) else faiss.write_index
    with atomic_path(path) as tmp:
        writer(index, str(tmp))


def read_faiss(kind: str, path: Path):
    import faiss

    reader = faiss.read_index_binary if kind == "binary" else faiss.read_index
    try:
        return reader(str(path))
    except RuntimeError as error:
        raise HashpaError(f"cannot read the FAISS index {path} ({_first_line(error)}); rebuild it with hashpa index") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[-1][:200]
