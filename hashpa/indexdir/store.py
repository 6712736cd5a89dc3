"""The HDF5 store of an index: one row per image, float embeddings and packed codes side by side.

Layout of ``store.h5`` (readable with plain h5py):

    paths        utf-8 strings [N]   image paths relative to the indexed folder, sorted
    labels       int32 [N]           class index into ``class_names``, -1 when unknown
    class_names  utf-8 strings [C]   the folder's class sub-folders (empty without classes)
    embeddings   float32|float16 [N, dim]   L2-normalised float embeddings
    codes        uint8 [N, bits/8]   the model's packed hash codes (numpy packbits order)
    fitted/      only with ``hashpa index --codes itq``: codes fitted to this database
      codes      uint8 [N, bits/8]   sign((embeddings - mean) @ projection), packed
      mean       float32 [dim]
      projection float32 [dim, bits] PCA-ITQ fitted on the embeddings (no labels used)
    rerank/      only with ``hashpa index --rerank-codes SPEC``: the embeddings compressed for re-ranking
      codes      uint8 [N, code_size]   FAISS ``sa_encode`` codes of the quantiser SPEC
      codec      uint8 [bytes]        ``faiss.serialize_index`` of that quantiser, trained on the embeddings
      attrs: spec
    label_sets   bool [N, C]         only for multi-label data: every class of each image (``labels`` holds its first)
    sizes        int64 [N]           file sizes and
    mtimes       int64 [N]           modification times (ns): what incremental runs compare
    attrs: bits (of the indexed codes), dim, backbone, preprocessing (JSON), model_fingerprint, hashpa_version,
           created (ISO time), store_id (changes with every write), root, code_source
           ("model" or "itq": which codes the binary indexes hold), rerank_codes (SPEC, or "")
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from hashpa import __version__
from hashpa.compressed import CompressedVectors
from hashpa.errors import HashpaError
from hashpa.fileio import atomic_path
from hashpa.indexdir.layout import rebuild_hint
from hashpa.quantizers import LinearHasher

log = logging.getLogger(__name__)

_STRINGS = h5py.string_dtype("utf-8")


@dataclass
class FittedCodes:
    """Codes fitted to the database by an unsupervised linear quantiser, and that quantiser."""

    codes: np.ndarray  # uint8 [N, bits/8]
    hasher: LinearHasher  # encodes query embeddings into this database's code space


@dataclass
class Store:
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    embeddings: np.ndarray
    codes: np.ndarray
    sizes: np.ndarray
    mtimes: np.ndarray
    attrs: dict = field(default_factory=dict)
    fitted: FittedCodes | None = None
    label_sets: np.ndarray | None = None  # bool [N, C] for multi-label data
    compressed: CompressedVectors | None = None  # the embeddings compressed for re-ranking

    @property
    def rerank_codes(self) -> str:
        """The quantiser of the compressed embeddings (a --rerank-codes spec), or "" without them."""
        return self.compressed.spec if self.compressed else ""

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def relevance_labels(self) -> np.ndarray:
        """What the metrics judge relevance by: the multi-hot label sets, or the class indices."""
        return self.label_sets if self.label_sets is not None else self.labels

    def label_text(self, row: int) -> str | None:
        """The class (or, for multi-label data, the classes joined by ', ') of `row`, or None."""
        if self.label_sets is not None:
            names = [self.class_names[i] for i in np.flatnonzero(self.label_sets[row])]
            return ", ".join(names) or None
        return self.class_names[self.labels[row]] if self.labels[row] >= 0 else None

    @property
    def bits(self) -> int:
        """Length of the codes the binary indexes hold (the fitted codes' if any)."""
        return int(self.index_codes.shape[1] * 8)

    @property
    def code_source(self) -> str:
        """A key of hashpa.indexdir.layout.CODE_SOURCES."""
        return "itq" if self.fitted else "model"

    @property
    def index_codes(self) -> np.ndarray:
        """uint8 [N, bits/8]: the codes the binary indexes hold (fitted ones if any, else the model's)."""
        return self.fitted.codes if self.fitted else self.codes

    @property
    def has_labels(self) -> bool:
        return bool(len(self)) and bool((self.labels >= 0).any())


@contextlib.contextmanager
def _quiet_failed_closes() -> Iterator[None]:
    """While a store is written: when a write fails (a full disk, the file size limit), h5py's objects
    fail again as they are freed and would print tracebacks of their own; the failure itself is
    reported once, by atomic_path."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: log.debug("while closing a failed store: %s", unraisable.exc_value)
    try:
        yield
    finally:
        sys.unraisablehook = previous


def write_store(path: str | Path, store: Store) -> str:
    """Write atomically; returns the new store_id."""
    store_id = uuid.uuid4().hex
    attrs = {
        **store.attrs,
        "bits": store.bits,
        "dim": int(store.embeddings.shape[1]),
        "hashpa_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "store_id": store_id,
        "code_source": store.code_source,
        "rerank_codes": store.rerank_codes,
    }
    with atomic_path(path) as tmp, _quiet_failed_closes():
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("paths", data=np.array(store.paths, dtype=object), dtype=_STRINGS)
            h5.create_dataset("labels", data=store.labels.astype(np.int32))
            h5.create_dataset("class_names", data=np.array(store.class_names, dtype=object), dtype=_STRINGS)
            h5.create_dataset("embeddings", data=store.embeddings)
            h5.create_dataset("codes", data=store.codes.astype(np.uint8))
            if store.label_sets is not None:
                h5.create_dataset("label_sets", data=store.label_sets.astype(bool))
            h5.create_dataset("sizes", data=store.sizes.astype(np.int64))
            h5.create_dataset("mtimes", data=store.mtimes.astype(np.int64))
            if store.fitted:
                h5.create_dataset("fitted/codes", data=store.fitted.codes.astype(np.uint8))
                h5.create_dataset("fitted/mean", data=store.fitted.hasher.mean.astype(np.float32))
                h5.create_dataset("fitted/projection", data=store.fitted.hasher.projection.astype(np.float32))
            if store.compressed:
                h5.create_dataset("rerank/codes", data=store.compressed.codes.astype(np.uint8))
                h5.create_dataset("rerank/codec", data=store.compressed.codec.astype(np.uint8))
                h5["rerank"].attrs["spec"] = store.compressed.spec
            for key, value in attrs.items():
                h5.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
    store.attrs = attrs
    return store_id


@dataclass
class StoredRows:
    """What a store says of its rows' files (paths, sizes, mtimes) and its attrs, with the vectors
    left in the file until `copy_into` reads them in slabs: memory stays bounded at any store size."""

    path: Path
    paths: np.ndarray  # object [N] of str
    sizes: np.ndarray  # int64 [N]
    mtimes: np.ndarray  # int64 [N]
    attrs: dict

    SLAB_ROWS = 65536

    def copy_into(self, dataset: str, source_rows: np.ndarray, target: np.ndarray, target_rows: np.ndarray) -> None:
        """target[target_rows] = the store's `dataset` ("embeddings" or "codes") at source_rows."""
        if not len(source_rows):
            return
        try:
            with h5py.File(self.path, "r") as h5:
                data = h5[dataset]
                for start in range(int(source_rows.min()) // self.SLAB_ROWS * self.SLAB_ROWS, int(source_rows.max()) + 1, self.SLAB_ROWS):
                    inside = (source_rows >= start) & (source_rows < start + self.SLAB_ROWS)
                    if inside.any():
                        slab = data[start : start + self.SLAB_ROWS]
                        target[target_rows[inside]] = slab[source_rows[inside] - start]
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
            raise HashpaError(f"cannot read the index store {self.path} ({error}); {rebuild_hint(self.path.parent)}") from None


def read_store_rows(path: str | Path) -> StoredRows:
    """The rows of the store at `path` without their vectors (see StoredRows)."""
    with _opened_store(Path(path)) as h5:
        return StoredRows(Path(path), np.array(_strings(h5["paths"]), dtype=object), h5["sizes"][()], h5["mtimes"][()],
                          {k: _attr(v) for k, v in h5.attrs.items()})


def read_store(path: str | Path, map_embeddings: bool = False) -> Store:
    """The store at `path`; with `map_embeddings` the float embeddings are memory-mapped from the file
    (read from disk as rows are used) instead of loaded, when HDF5 keeps them contiguous, as
    write_store does."""
    path = Path(path)
    with _opened_store(path) as h5:
        return Store(
            paths=_strings(h5["paths"]),
            labels=h5["labels"][()],
            class_names=_strings(h5["class_names"]),
            embeddings=_mapped(path, h5["embeddings"]) if map_embeddings else h5["embeddings"][()],
            codes=h5["codes"][()],
            sizes=h5["sizes"][()],
            mtimes=h5["mtimes"][()],
            attrs={k: _attr(v) for k, v in h5.attrs.items()},
            fitted=_read_fitted(h5),
            label_sets=h5["label_sets"][()] if "label_sets" in h5 else None,
            compressed=_read_compressed(h5),
        )


@contextlib.contextmanager
def _opened_store(path: Path) -> Iterator[h5py.File]:
    """The store file open for reading; h5py's errors for damaged or foreign files raised as HashpaError."""
    if not path.is_file():
        raise HashpaError(f"no index store at {path}: build one with hashpa index FOLDER --run-dir RUN --out {path.parent}")
    try:
        with h5py.File(path, "r") as h5:
            yield h5
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise HashpaError(f"cannot read the index store {path} ({error}); {rebuild_hint(path.parent)}") from None


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [s.decode("utf-8") if isinstance(s, bytes) else s for s in dataset[()]]


def _mapped(path: Path, dataset: h5py.Dataset) -> np.ndarray:
    offset = dataset.id.get_offset()
    if offset is None or dataset.chunks is not None or dataset.compression is not None:  # empty, or not one block
        return dataset[()]
    return np.memmap(path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)


def _read_fitted(h5: h5py.File) -> FittedCodes | None:
    if "fitted" not in h5:
        return None
    group = h5["fitted"]
    return FittedCodes(group["codes"][()], LinearHasher(group["mean"][()], group["projection"][()]))


def _read_compressed(h5: h5py.File) -> CompressedVectors | None:
    if "rerank" not in h5:
        return None
    group = h5["rerank"]
    return CompressedVectors(_attr(group.attrs["spec"]), group["codec"][()], group["codes"][()])


def _attr(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value.item() if hasattr(value, "item") else value
