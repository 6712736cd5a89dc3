"""The searches behind ``hashpa serve``: the served index directories, each reopened when an update
publishes a newer generation, a search request answered mode by mode, thumbnails of indexed images
(only from inside the indexed folder), and what the page shows of each index."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
from PIL import Image

from hashpa.codes import code_strings
from hashpa.data.decode import ImageError, decode_image
from hashpa.errors import HashpaError
from hashpa.metrics.relevance import relevant_at
from hashpa.search.modes import MODE_FACTS, default_spec, image_bytes
from hashpa.serve.requests import RequestError

log = logging.getLogger(__name__)

MAX_K = 100
THUMB_PIXELS = 160
DECODE_SLOTS = 2  # uploads and thumbnails decoded at once
QUERY_SIDE_FACTOR = 4  # a served query is decoded with its short side at least this many times the model's input
MAX_QUERY_PIXELS = 40_000_000  # what an upload may hold after that reduction (a larger PNG or WebP is refused: 413)


@dataclass
class Served:
    """One index directory the server answers for."""

    name: str
    index: object  # hashpa.search.Index
    facts: dict


class SearchService:
    """The searches behind the API: the index's model runs once per request on one image, and one
    request at a time holds it (a lock), so concurrent requests are safe. An index that an update
    has replaced is reopened before the next request uses it."""

    def __init__(self, index_dirs: Sequence[str | Path], device: str = "auto", engine: str = "auto", milvus: str | None = None,
                 collection: str | None = None):
        """`milvus`: answer from the Milvus collections the index directories were published to
        (`collection` names the one of a single index directory; default: from each directory's name)."""
        from hashpa.search.index import open_index

        if not index_dirs:
            raise HashpaError("give at least one index directory to serve")
        if collection is not None and len(index_dirs) > 1:
            raise HashpaError("--collection names the collection of one index directory; with several, each one's is taken from its name")
        self.indexes: dict[str, Served] = {}
        for path in index_dirs:
            ix = open_index(path, device=device, engine=engine, milvus=milvus, collection=collection)
            name = _unique(Path(path).resolve().name or "index", self.indexes)
            _warm_up(ix)
            self.indexes[name] = Served(name, ix, _facts(name, ix))
        self.lock = threading.Lock()
        self.reload_lock = threading.Lock()
        self.decoding = threading.BoundedSemaphore(DECODE_SLOTS)

    def served(self, name: str | None) -> Served:
        if name is not None and not isinstance(name, str):
            raise RequestError(400, f"index must be the name of a served index, got {name!r}")
        if name is None:
            name = next(iter(self.indexes))
        if name not in self.indexes:
            raise RequestError(404, f"no index named {name!r}; served: {', '.join(self.indexes)}")
        return self._current(self.indexes[name])

    def all_served(self) -> list[Served]:
        return [self._current(s) for s in list(self.indexes.values())]

    def _current(self, served: Served) -> Served:
        """`served`, or its index directory reopened when an update has published a newer generation
        (a reopening that fails keeps the one served, with a warning)."""
        if not served.index.directory.outdated():
            return served
        with self.reload_lock:
            served = self.indexes[served.name]
            if not served.index.directory.outdated():
                return served
            try:
                fresh = served.index.reopened()
                _warm_up(fresh)
            except HashpaError as error:
                log.warning("%s was updated but cannot be opened (%s): still serving its earlier generation", served.index.path, error)
                return served
            replacement = Served(served.name, fresh, _facts(served.name, fresh))
            with self.lock:  # no search holds the old generation now
                self.indexes[served.name] = replacement
                served.index.close()
            log.info("%s: serving its new generation (%d items)", served.name, len(fresh))
            return replacement

    def search(self, served: Served, image: bytes | None, row: int | None, k: int, modes: list[str], shortlist: int | None) -> dict:
        ix = served.index
        if not modes:
            raise RequestError(400, f"modes names no search mode; this index supports {', '.join(ix.modes)}")
        unknown = [m for m in modes if m not in ix.modes]
        if unknown:
            raise RequestError(400, f"unknown or unavailable mode {', '.join(unknown)}; this index supports {', '.join(ix.modes)}")
        if not 1 <= k <= min(MAX_K, len(ix)):
            raise RequestError(400, f"k must be between 1 and {min(MAX_K, len(ix))}, got {k}")
        if shortlist is not None and not 1 <= shortlist <= len(ix):
            raise RequestError(400, f"shortlist must be between 1 and {len(ix)}, got {shortlist}")
        picture = None
        if image is not None:
            with self.decoding:  # a few decodes at a time: memory stays bounded, and searches of rows never wait behind them
                picture = _decoded(image, ix.model().preprocessing.input_size)
        with self.lock:
            started = time.perf_counter()
            if picture is not None:
                embeddings, codes = ix.embed([picture], batch_size=1)
                label = None
            else:
                if row is None or not 0 <= row < len(ix):
                    raise RequestError(404, f"no indexed row {row}: rows go from 0 to {len(ix) - 1}")
                embeddings, codes = ix.directory.float_rows([row]), ix.store.index_codes[[row]]
                label = _label(ix, row)
            embed_ms = (time.perf_counter() - started) * 1000
            results = {mode: self._mode(ix, mode, embeddings, codes, k, shortlist, row if label is not None else None) for mode in modes}
        return {"index": served.name, "query": {"row": row, "label": label, "code": code_strings(codes)[0], "embed_ms": embed_ms},
                "results": results}

    def _mode(self, ix, mode: str, embeddings, codes, k: int, shortlist: int | None, query_row: int | None) -> dict:
        """One mode's hits; with a labelled indexed row as the query, each hit is marked correct when relevant to it (a shared class)."""
        started = time.perf_counter()
        facts = MODE_FACTS[mode]
        found = ix.search(embeddings, k, mode, codes=codes, shortlist=shortlist if facts.shortlist else None)
        ms = (time.perf_counter() - started) * 1000
        labels = ix.store.relevance_labels
        correct = None if query_row is None else relevant_at(labels[[query_row]], labels, found.ids[:1])[0]
        hits = []
        for rank, (row, score) in enumerate(zip(found.ids[0].tolist(), found.scores[0].tolist()), start=1):
            hit_label = _label(ix, row)
            hits.append({"rank": rank, "row": row, "path": ix.store.paths[row], "score": float(score), "label": hit_label,
                         "correct": None if correct is None or hit_label is None else bool(correct[rank - 1])})
        return {"ms": ms, "score": facts.score, "hits": hits}

    def thumbnail(self, served: Served, row: int) -> bytes:
        ix = served.index
        if not 0 <= row < len(ix):
            raise RequestError(404, f"no indexed row {row}")
        relative = PurePosixPath(ix.store.paths[row])
        if relative.is_absolute() or ".." in relative.parts:  # a store path leaving the indexed folder
            raise RequestError(403, f"row {row}'s path is outside the indexed folder")
        try:
            root = ix.directory.image_root().resolve()
            image = (root / relative).resolve()
            if not image.is_relative_to(root):  # a link inside the folder pointing out of it
                raise RequestError(403, f"row {row}'s image links outside the indexed folder")
            with self.decoding:
                picture = decode_image(image, at_least=THUMB_PIXELS)
                picture.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
                release_freed_memory()
        except (ImageError, HashpaError) as error:
            raise RequestError(404, f"the image of row {row} cannot be read: {error}") from None
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def answer(self, image: bytes | None, fields: dict) -> dict:
        """A search request's answer (in a worker thread): the checked fields (``checked_fields``), then the search."""
        served = self.served(fields.get("index"))
        modes = fields.get("modes")
        modes = served.index.modes if modes is None else modes
        row = fields.get("row") if image is None else None
        if image is None and row is None:
            raise RequestError(400, "give an image (multipart field 'image') or an indexed row ('row')")
        return self.search(served, image, row, fields.get("k", 10), modes, fields.get("shortlist"))


def _decoded(data: bytes, input_size: int):
    """An upload decoded (a large JPEG at a reduced scale still larger than the model's input), at
    most MAX_QUERY_PIXELS after that."""
    try:
        return decode_image(data, at_least=QUERY_SIDE_FACTOR * input_size, max_pixels=MAX_QUERY_PIXELS)
    except ImageError as error:
        raise RequestError(413 if "pixels accepted here" in str(error) else 400, f"the upload is not an image hashpa can read: {error}") from None
    finally:
        release_freed_memory()


def release_freed_memory() -> None:
    """Hand memory freed by a large decode back to the system (glibc keeps it otherwise, and the
    server's resident size would stay at its peak)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def _label(ix, row: int) -> str | None:
    return ix.store.label_text(row)


def _warm_up(ix) -> None:
    """Load the model and the FAISS indexes, and run each once, now rather than on the first request."""
    embeddings, codes = ix.embed([Image.new("RGB", (64, 64))], batch_size=1)
    for mode in ix.modes:
        ix.search(embeddings, 1, mode, codes=codes)


def _unique(name: str, taken: dict) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _facts(name: str, ix) -> dict:
    """What the page's panel shows about an index."""
    store, meta = ix.store, ix.meta
    compare = ix.path / "compare.json"
    figures = None
    if compare.is_file():
        try:
            report = json.loads(compare.read_text(encoding="utf-8"))
            figures = [{k: row.get(k) for k in ("method", "recall@1", "map@r", "queries_per_second", "bytes_per_image")} for row in report["methods"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            figures = None  # not a compare report: the page shows no figures
    return {"name": name, "path": str(ix.path), "items": len(ix), "bits": store.bits, "dim": int(store.embeddings.shape[1]),
            "code_source": store.code_source, "modes": ix.modes, "labels": bool(store.has_labels), "classes": len(store.class_names),
            "bytes_per_item": {mode: round(image_bytes(ix.directory, mode, default_spec(mode)), 1) for mode in ix.modes},
            "model": meta.model, "fingerprint": meta.model_fingerprint, "compare": figures,
            "sample_rows": np.linspace(0, len(ix) - 1, min(len(ix), 48)).astype(int).tolist()}
