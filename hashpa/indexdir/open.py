"""An index directory opened for reading: its metadata, its store and (loaded on first use) its FAISS indexes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hashpa.errors import HashpaError, ModelMismatchError
from hashpa.fileio import verify
from hashpa.indexdir.faiss_files import OPTIONS, read_faiss
from hashpa.indexdir.generations import hold_current
from hashpa.indexdir.layout import INDEX_JSON, image_root, read_meta, rebuild_hint
from hashpa.indexdir.store import Store, read_store
from hashpa.settings import whole_number


class IndexDir:
    """The files of an index directory, read-only. The store's float embeddings are memory-mapped
    (read from disk as rows are used), FAISS indexes are read when first asked for; every file is
    checked against the size and checksum index.json recorded for it, and index.json against the store."""

    def __init__(self, path: str | Path, nprobe: int | None = None, ef_search: int | None = None):
        """nprobe (IVF lists visited) and ef_search (HNSW beam width) tune approximate indexes."""
        if not isinstance(path, (str, os.PathLike)):
            raise HashpaError(f"an index directory is a path (a str or a pathlib.Path), got {path!r}")
        self.path = Path(path)
        for name, value in (("--nprobe", nprobe), ("--ef-search", ef_search)):
            if value is not None:
                whole_number(value, name)
        self.nprobe, self.ef_search = nprobe, ef_search
        self._stamp = _stamp(self.path)  # before index.json is read: a replacement meanwhile shows as a change
        self.meta, self._held = hold_current(self.path)
        self.fix = rebuild_hint(self.path)
        store_file = self.path / self.meta.store
        try:
            if self.meta.store in self.meta.files:
                verify(store_file, self.meta.files[self.meta.store], self.fix)
            self.store: Store = read_store(store_file, map_embeddings=True)
        except BaseException:
            self.close()
            raise
        self._loaded: dict[tuple[str, str], object] = {}
        if self.store.attrs.get("store_id") != self.meta.store_id:
            raise HashpaError(f"{self.path}: the store and {INDEX_JSON} do not match (an interrupted hashpa index?); {self.fix}")
        recorded = {"rows": self.meta.rows, "bits": self.meta.bits, "dim": self.meta.dim, "code_source": self.meta.code_source,
                    "rerank_codes": self.meta.rerank_codes}
        actual = {"rows": len(self.store), "bits": self.store.bits, "dim": int(self.store.embeddings.shape[1]), "code_source": self.store.code_source,
                  "rerank_codes": self.store.rerank_codes}
        if recorded != actual:
            changed = ", ".join(f"{k} {recorded[k]!r} (the store: {actual[k]!r})" for k in recorded if recorded[k] != actual[k])
            raise HashpaError(f"{self.path / INDEX_JSON} does not describe its store: {changed}; {self.fix}")
        problem = self.store.compressed and self.store.compressed.problem(len(self.store), self.meta.dim)
        if problem:
            raise HashpaError(f"{store_file} is damaged: {problem}; {self.fix}")

    def outdated(self) -> bool:
        """Whether an update has published a newer generation of the index since it was opened."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        try:
            newer = read_meta(self.path).store_id != self.meta.store_id
        except HashpaError:
            return False  # index.json unreadable now: keep what is open
        if not newer:
            self._stamp = stamp
        return newer

    def close(self) -> None:
        """Let go of the generation this reader holds (updates may then remove its files)."""
        if not self._held.closed:
            self._held.close()

    def __enter__(self) -> "IndexDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    @property
    def fingerprint(self) -> str:
        return self.meta.model_fingerprint

    def specs(self, kind: str) -> list[str]:
        return self.meta.specs(kind)

    def float_rows(self, rows) -> np.ndarray:
        """float32 [len(rows), dim]: the stored embeddings of `rows` (any index numpy takes)."""
        return np.asarray(self.store.embeddings[rows], dtype=np.float32)

    def image_root(self) -> Path:
        return image_root(self.path, self.meta)

    def faiss_index(self, kind: str, spec: str):
        if (kind, spec) not in self._loaded:
            self._loaded[kind, spec] = self._read_faiss(kind, spec)
        return self._loaded[kind, spec]

    def _read_faiss(self, kind: str, spec: str):
        entry = self.meta.entry(kind, spec)
        if entry is None:
            built = ", ".join(self.specs(kind)) or "none"
            raise HashpaError(f"{self.path} has no {kind} index {spec!r} (built: {built}); add it with hashpa index ... {OPTIONS[kind]} {spec}")
        index = read_faiss(kind, self.path / entry["file"], self.meta.files.get(entry["file"]), self.fix)
        if self.nprobe and hasattr(index, "nprobe"):
            index.nprobe = self.nprobe
        if self.ef_search and hasattr(index, "hnsw"):
            index.hnsw.efSearch = self.ef_search
        if index.ntotal != len(self.store):
            raise HashpaError(f"{self.path / entry['file']} holds {index.ntotal} vectors, the store {len(self.store)}; {self.fix}")
        return index

    def check_model(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            raise ModelMismatchError(
                f"the queries were embedded by model {fingerprint}, but {self.path} was built with model {self.fingerprint}: "
                "use the model the index was built with (see index.json), or rebuild the index with this one"
            )


def _stamp(index_dir: Path) -> tuple | None:
    """What changes when index.json is replaced (its inode, size and time), or None when it is absent."""
    try:
        stat = (index_dir / INDEX_JSON).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
