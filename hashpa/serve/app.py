"""``hashpa serve``: a web page and a JSON API over one or more index directories, float and binary
side by side.

Starlette (an ASGI toolkit, served by uvicorn) is enough here: a handful of routes, multipart
uploads and static files, with a test client; no ORM, templates or validation layer to carry.

    GET  /                 the page (static HTML and JS, no build step)
    GET  /index            the indexes' facts: items, bits, bytes per item, model, modes, compare figures
    POST /search           a query (an uploaded image, or an indexed row), k, modes, shortlist: ranked hits per mode
    GET  /thumb/{name}/{row}   a thumbnail of an indexed row's image (store rows only)

Every answer is strict JSON (a NaN or an infinity is null); every mistake in a request is a 4xx
with {"error": ...}. Requests are read in chunks and refused (413) once past the upload limit;
decoding, embedding and searching run in worker threads, so the event loop keeps answering; only
the Host names allowed (localhost by default, ``--allow-host``) are answered, against DNS
rebinding; an index updated by ``hashpa index`` while it is served is reopened at its new
generation on the next request (searches in flight finish on the old one).
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
from hashpa.fileio import finite, json_default
from hashpa.metrics.relevance import relevant_at
from hashpa.search.modes import MODE_FACTS

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
    request at a time holds it (a lock), so concurrent requests are safe. An index that an update
    has replaced is reopened before the next request uses it."""

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
        self.reload_lock = threading.Lock()

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
        if not served.index.files.outdated():
            return served
        with self.reload_lock:
            served = self.indexes[served.name]
            if not served.index.files.outdated():
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
            root = ix.files.image_root().resolve()
            image = (root / relative).resolve()
            if not image.is_relative_to(root):  # a link inside the folder pointing out of it
                raise RequestError(403, f"row {row}'s image links outside the indexed folder")
            picture = decode_image(image)
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


def create_app(index_dirs: Sequence[str | Path], device: str = "auto", max_upload_bytes: int = MAX_UPLOAD_BYTES,
               allowed_hosts: Sequence[str] = ()):
    """The Starlette application serving `index_dirs` (raises HashpaError when one cannot be opened).
    Requests whose Host is not localhost (or one of `allowed_hosts`) are refused."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.requests import Request
        from starlette.responses import FileResponse, Response
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError:
        raise HashpaError("hashpa serve needs Starlette and uvicorn: pip install 'hashpa[serve]'") from None

    service = SearchService(index_dirs, device)
    hosts = {*LOCAL_HOSTS, *(h.lower().strip("[]") for h in allowed_hosts)}

    async def page(request: Request):
        return FileResponse(STATIC / "index.html")

    async def index_facts(request: Request):
        served = await run_in_threadpool(service.all_served)
        return json_response({"indexes": [s.facts for s in served]})

    async def search(request: Request):
        image, fields = await _read_query(request, max_upload_bytes)
        return json_response(await run_in_threadpool(_answer, service, image, fields))

    async def thumbnail(request: Request):
        served = await run_in_threadpool(service.served, request.path_params["name"])
        picture = await run_in_threadpool(service.thumbnail, served, int(request.path_params["row"]))
        return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    routes = [Route("/", page), Route("/index", index_facts), Route("/search", search, methods=["POST"]),
              Route("/thumb/{name}/{row:int}", thumbnail), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={RequestError: _request_error, HTTPException: _http_error, HashpaError: _failure,
                                                       Exception: _failure})
    app.state.service = service
    return _HostCheck(app, hosts)


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class _HostCheck:
    """ASGI middleware answering only requests whose Host header names an allowed host (DNS rebinding:
    a page elsewhere whose name resolves to this machine must not reach the API)."""

    def __init__(self, app, hosts: set[str]):
        self.app, self.hosts = app, hosts
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self.hosts:
                response = json_response({"error": f"this server answers for {', '.join(sorted(self.hosts))}, not Host {host or '(none)'!r}: "
                                                   "start it with hashpa serve --allow-host NAME to answer for another name"}, 400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(header: str) -> str:
    """The host of a Host header, without its port, lower case ('[::1]:8000' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def json_response(content, status: int = 200):
    """A JSON response of `content` with every NaN and infinity as null (JSON has neither)."""
    from starlette.responses import Response

    body = json.dumps(finite(content), allow_nan=False, default=json_default).encode("utf-8")
    return Response(body, status_code=status, media_type="application/json")


async def _request_error(request, error: "RequestError"):
    return json_response({"error": str(error)}, error.status)


async def _http_error(request, error):
    """Starlette's own errors (no such route, a method not allowed) as JSON too."""
    return json_response({"error": error.detail}, error.status_code)


async def _failure(request, error: Exception):
    """What the server could not do (not a fault of the request): a 500 with the reason, logged."""
    if not isinstance(error, HashpaError):
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return json_response({"error": f"the server could not answer: {error}" if isinstance(error, HashpaError) else "the server could not answer "
                                   "(an internal error, logged by hashpa serve)"}, 500)


def _answer(service: SearchService, image: bytes | None, fields: dict) -> dict:
    """A search request's answer (in a worker thread): its fields checked, then the search."""
    served = service.served(fields.get("index"))
    modes = fields.get("modes")
    modes = served.index.modes if modes is None else modes
    row = fields.get("row") if image is None else None
    if image is None and row is None:
        raise RequestError(400, "give an image (multipart field 'image') or an indexed row ('row')")
    return service.search(served, image, row, fields.get("k", 10), modes, fields.get("shortlist"))


async def _read_query(request, max_upload_bytes: int) -> tuple[bytes | None, dict]:
    """(the uploaded image's bytes or None, the checked fields) of a multipart or JSON request. The
    body is read in chunks and refused (413) once it is larger than the upload limit allows."""
    limit = max_upload_bytes + FORM_OVERHEAD
    too_large = RequestError(413, f"the request is larger than an upload may be: uploads are limited to {max_upload_bytes:,} bytes "
                                  "(hashpa serve --max-upload-mb)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        return None, checked_fields(_json_object(bytes(body)), from_form=False)
    if not kind.startswith("multipart/form-data"):
        raise RequestError(415, "send multipart/form-data (an image upload) or application/json (an indexed row)")
    return await _read_form(request, bytes(body), max_upload_bytes)


FORM_OVERHEAD = 64 * 1024  # a multipart body's boundaries and fields beyond the image itself


def _json_object(body: bytes) -> dict:
    def no_constant(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        fields = json.loads(body.decode("utf-8") if body else "{}", parse_constant=no_constant)
    except UnicodeDecodeError:
        raise RequestError(400, "the JSON body is not UTF-8 text") from None
    except (ValueError, RecursionError) as error:
        raise RequestError(400, f"the JSON body cannot be read: {str(error)[:200]}") from None
    if not isinstance(fields, dict):
        raise RequestError(400, "the JSON body must be an object")
    return fields


async def _read_form(request, body: bytes, max_upload_bytes: int) -> tuple[bytes | None, dict]:
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def chunks():
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=1, max_fields=len(FIELDS), max_part_size=max_upload_bytes).parse()
    except MultiPartException as error:
        raise RequestError(400, f"the multipart form cannot be read: {error.message}") from None
    upload = form.get("image")
    fields = checked_fields({key: value for key, value in form.multi_items() if key != "image"}, from_form=True)
    if upload is None:
        return None, fields
    if isinstance(upload, str):
        raise RequestError(400, "image must be an uploaded file, not a text field")
    data = await upload.read(max_upload_bytes + 1)
    if len(data) > max_upload_bytes:
        raise RequestError(413, f"the upload is more than {max_upload_bytes:,} bytes (hashpa serve --max-upload-mb)")
    if not data:
        raise RequestError(400, "the uploaded file is empty")
    return data, fields


FIELDS = {"index": "the name of a served index", "row": "a whole number", "k": "a whole number", "shortlist": "a whole number",
          "modes": "search modes separated by commas (or, in JSON, a list of them)"}


def checked_fields(fields: dict, from_form: bool) -> dict:
    """A search request's fields, each of the type it must have ("k": 5, "modes": ["float"] ...);
    anything else is a 400 naming the field. Form fields are text: whole numbers in digits, an
    empty field is an absent one."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise RequestError(400, f"unknown field {', '.join(map(repr, unknown))}; a search takes {', '.join(FIELDS)} (and an uploaded image)")
    checked = {}
    for name, value in fields.items():
        if from_form and isinstance(value, str) and value == "":
            continue
        if name in ("row", "k", "shortlist"):
            checked[name] = _whole_number(value, name, from_form)
        elif name == "modes":
            checked[name] = _modes(value)
        elif isinstance(value, str):
            checked[name] = value
        else:
            raise RequestError(400, f"{name} must be {FIELDS[name]}, got {_shown(value)}")
    return checked


def _whole_number(value, name: str, from_form: bool) -> int:
    if from_form and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if not from_form and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise RequestError(400, f"{name} must be a whole number, got {_shown(value)}")


def _modes(value) -> list[str]:
    if isinstance(value, str):
        return [m for m in value.split(",") if m]
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return value
    raise RequestError(400, f"modes must be {FIELDS['modes']}, got {_shown(value)}")


def _shown(value) -> str:
    text = json.dumps(finite(value), default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _decoded(data: bytes):
    try:
        return decode_image(data)
    except ImageError as error:
        raise RequestError(400, f"the upload is not an image hashpa can read: {error}") from None


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
    float_bytes = store.embeddings.itemsize * store.embeddings.shape[1]
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
            "bytes_per_item": {mode: MODE_FACTS[mode].bytes_per_item(float_bytes, store.bits / 8) for mode in ix.modes},
            "model": meta.model, "fingerprint": meta.model_fingerprint, "compare": figures,
            "sample_rows": np.linspace(0, len(ix) - 1, min(len(ix), 48)).astype(int).tolist()}


def serve(index_dirs: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          max_upload_mb: float = MAX_UPLOAD_BYTES / 2**20, allow_hosts: Sequence[str] = ()) -> None:
    """Serve `index_dirs` on http://host:port until interrupted, answering requests for localhost,
    for `host` when it is a name or address of its own, and for `allow_hosts`."""
    own = () if host in ("0.0.0.0", "::", "") else (host,)
    app = create_app(index_dirs, device, int(max_upload_mb * 2**20), [*own, *allow_hosts])
    import uvicorn

    log.info("serving %s on http://%s:%d", ", ".join(app.state.service.indexes), host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
