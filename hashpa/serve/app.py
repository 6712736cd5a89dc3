"""``hashpa serve``: a web page and a JSON API over one or more index directories, float and binary
side by side.

Starlette (an ASGI toolkit, served by uvicorn) is enough here: a handful of routes, multipart
uploads and static files, with a test client; no ORM, templates or validation layer to carry.

    GET  /                 the page (static HTML and JS, no build step)
    GET  /index            the indexes' facts: items, bits, bytes per item, model, modes, compare figures
    POST /search           a query (an uploaded image, or an indexed row), k, modes, shortlist: ranked hits per mode
    GET  /thumb/{name}/{row}   a thumbnail of an indexed row's image (store rows only)
"""

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

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 20 * 2**20  # a photo; larger uploads are refused (413)
MAX_K = 100
THUMB_PIXELS = 160


@dataclass
class Served:
    """One index directory the server answers for."""

    name: str
    index: object  # hashpa.search.Index
    facts: dict


class SearchService:
    """The searches behind the API: the index's model runs once per request on one image, and one
    request at a time holds it (a lock), so concurrent requests are safe."""

    def __init__(self, index_dirs: Sequence[str | Path], device: str = "auto"):
        from hashpa.search.index import open_index

        if not index_dirs:
            raise HashpaError("give at least one index directory to serve")
        self.indexes: dict[str, Served] = {}
        for path in index_dirs:
            ix = open_index(path, device=device)
            name = _unique(Path(path).resolve().name or "index", self.indexes)
            _warm_up(ix)
            self.indexes[name] = Served(name, ix, _facts(name, ix))
        self.lock = threading.Lock()

    def served(self, name: str | None) -> Served:
        if name is None:
            return next(iter(self.indexes.values()))
        if name not in self.indexes:
            raise RequestError(404, f"no index named {name!r}; served: {', '.join(self.indexes)}")
        return self.indexes[name]

    def search(self, served: Served, image: bytes | None, row: int | None, k: int, modes: list[str], shortlist: int | None) -> dict:
        ix = served.index
        unknown = [m for m in modes if m not in ix.modes]
        if unknown:
            raise RequestError(400, f"unknown or unavailable mode {', '.join(unknown)}; this index supports {', '.join(ix.modes)}")
        if not 1 <= k <= min(MAX_K, len(ix)):
            raise RequestError(400, f"k must be between 1 and {min(MAX_K, len(ix))}, got {k}")
        if shortlist is not None and not 1 <= shortlist <= len(ix):
            raise RequestError(400, f"shortlist must be between 1 and {len(ix)}, got {shortlist}")
        with self.lock:
            started = time.perf_counter()
            if image is not None:
                embeddings, codes = ix.embed([_decoded(image)], batch_size=1)
                label = None
            else:
                if row is None or not 0 <= row < len(ix):
                    raise RequestError(404, f"no indexed row {row}: rows go from 0 to {len(ix) - 1}")
                embeddings, codes = ix.files.float_rows([row]), ix.store.index_codes[[row]]
                label = _label(ix, row)
            embed_ms = (time.perf_counter() - started) * 1000
            results = {mode: self._mode(ix, mode, embeddings, codes, k, shortlist, label) for mode in modes}
        return {"index": served.name, "query": {"row": row, "label": label, "code": code_strings(codes)[0], "embed_ms": embed_ms},
                "results": results}

    def _mode(self, ix, mode: str, embeddings, codes, k: int, shortlist: int | None, label: str | None) -> dict:
        started = time.perf_counter()
        found = ix.search(embeddings, k, mode, codes=codes, shortlist=shortlist if mode in ("rerank", "asymmetric") else None)
        ms = (time.perf_counter() - started) * 1000
        hits = []
        for rank, (row, score) in enumerate(zip(found.ids[0].tolist(), found.scores[0].tolist()), start=1):
            hit_label = _label(ix, row)
            hits.append({"rank": rank, "row": row, "path": ix.store.paths[row], "score": float(score), "label": hit_label,
                         "correct": None if label is None or hit_label is None else hit_label == label})
        return {"ms": ms, "score": {"binary": "Hamming distance", "asymmetric": "projection . code"}.get(mode, "cosine"), "hits": hits}

    def thumbnail(self, served: Served, row: int) -> bytes:
        ix = served.index
        if not 0 <= row < len(ix):
            raise RequestError(404, f"no indexed row {row}")
        relative = PurePosixPath(ix.store.paths[row])
        if relative.is_absolute() or ".." in relative.parts:  # a store path leaving the indexed folder
            raise RequestError(403, f"row {row}'s path is outside the indexed folder")
        try:
            picture = decode_image(ix.files.image_root() / relative)
        except (ImageError, HashpaError) as error:
            raise RequestError(404, f"the image of row {row} cannot be read: {error}") from None
        picture.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(index_dirs: Sequence[str | Path], device: str = "auto", max_upload_bytes: int = MAX_UPLOAD_BYTES):
    """The Starlette application serving `index_dirs` (raises HashpaError when one cannot be opened)."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError:
        raise HashpaError("hashpa serve needs Starlette and uvicorn: pip install 'hashpa[serve]'") from None

    service = SearchService(index_dirs, device)

    def failure(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def page(request: Request):
        return FileResponse(STATIC / "index.html")

    async def index_facts(request: Request):
        try:
            return JSONResponse({"indexes": [s.facts for s in service.indexes.values()]})
        except RequestError as error:
            return failure(error.status, str(error))

    async def search(request: Request):
        try:
            image, fields = await _read_query(request, max_upload_bytes)
            served = service.served(fields.get("index"))
            modes = [m for m in str(fields.get("modes") or ",".join(served.index.modes)).split(",") if m]
            row = _integer(fields.get("row"), "row") if image is None else None
            if image is None and row is None:
                raise RequestError(400, "give an image (multipart field 'image') or an indexed row ('row')")
            answer = service.search(served, image, row, _integer(fields.get("k", 10), "k"), modes, _integer(fields.get("shortlist"), "shortlist"))
            return JSONResponse(answer)
        except RequestError as error:
            return failure(error.status, str(error))

    async def thumbnail(request: Request):
        try:
            served = service.served(request.path_params["name"])
            return Response(service.thumbnail(served, int(request.path_params["row"])), media_type="image/jpeg",
                            headers={"Cache-Control": "max-age=3600"})
        except RequestError as error:
            return failure(error.status, str(error))

    routes = [Route("/", page), Route("/index", index_facts), Route("/search", search, methods=["POST"]),
              Route("/thumb/{name}/{row:int}", thumbnail), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes)
    app.state.service = service
    return app


async def _read_query(request, max_upload_bytes: int) -> tuple[bytes | None, dict]:
    """(the uploaded image's bytes or None, the other fields) of a multipart or JSON request, the
    upload refused (413) beyond max_upload_bytes."""
    declared = int(request.headers.get("content-length") or 0)
    if declared > max_upload_bytes + 64 * 1024:
        raise RequestError(413, f"the request is {declared:,} bytes; uploads are limited to {max_upload_bytes:,} (hashpa serve --max-upload-mb)")
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            fields = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as error:
            raise RequestError(400, f"the JSON body cannot be read: {error}") from None
        if not isinstance(fields, dict):
            raise RequestError(400, "the JSON body must be an object")
        return None, fields
    if not kind.startswith("multipart/form-data"):
        raise RequestError(415, "send multipart/form-data (an image upload) or application/json (an indexed row)")
    form = await request.form(max_part_size=max_upload_bytes)
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        return None, fields
    data = await upload.read(max_upload_bytes + 1)
    if len(data) > max_upload_bytes:
        raise RequestError(413, f"the upload is more than {max_upload_bytes:,} bytes (hashpa serve --max-upload-mb)")
    if not data:
        raise RequestError(400, "the uploaded file is empty")
    return data, fields


def _decoded(data: bytes):
    try:
        return decode_image(data)
    except ImageError as error:
        raise RequestError(400, f"the upload is not an image hashpa can read: {error}") from None


def _integer(value, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RequestError(400, f"{name} must be a whole number, got {value!r}") from None


def _label(ix, row: int) -> str | None:
    label = int(ix.store.labels[row])
    return ix.store.class_names[label] if label >= 0 else None


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
    float_bytes = store.embeddings.itemsize * store.embeddings.shape[1]
    compare = ix.path / "compare.json"
    figures = None
    if compare.is_file():
        try:
            report = json.loads(compare.read_text())
            figures = [{k: row.get(k) for k in ("method", "recall@1", "map@r", "queries_per_second", "bytes_per_image")} for row in report["methods"]]
        except (OSError, ValueError, KeyError, TypeError):
            figures = None
    return {"name": name, "path": str(ix.path), "items": len(ix), "bits": store.bits, "dim": int(store.embeddings.shape[1]),
            "code_source": store.code_source, "modes": ix.modes, "labels": bool(store.has_labels), "classes": len(store.class_names),
            "bytes_per_item": {mode: size for mode, size in {"float": float_bytes, "binary": store.bits / 8, "rerank": float_bytes + store.bits / 8,
                                                              "asymmetric": store.bits / 8}.items() if mode in ix.modes},
            "model": meta.model, "fingerprint": meta.model_fingerprint, "compare": figures,
            "sample_rows": np.linspace(0, len(ix) - 1, min(len(ix), 48)).astype(int).tolist()}


def serve(index_dirs: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          max_upload_mb: float = MAX_UPLOAD_BYTES / 2**20) -> None:
    """Serve `index_dirs` on http://host:port until interrupted."""
    app = create_app(index_dirs, device, int(max_upload_mb * 2**20))
    import uvicorn

    log.info("serving %s on http://%s:%d", ", ".join(app.state.service.indexes), host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
