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

import json
import logging
from pathlib import Path
from typing import Sequence

from hashpa.errors import HashpaError
from hashpa.fileio import finite, json_default
from hashpa.serve.requests import RequestError, read_query
from hashpa.serve.service import SearchService

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 20 * 2**20  # a photo; larger uploads are refused (413)


def create_app(index_dirs: Sequence[str | Path], device: str = "auto", max_upload_bytes: int = MAX_UPLOAD_BYTES,
               allowed_hosts: Sequence[str] = (), engine: str = "auto", milvus: str | None = None, collection: str | None = None):
    """The Starlette application serving `index_dirs` (raises HashpaError when one cannot be opened);
    `milvus`, `collection`: answer from their Milvus collections (``SearchService``).
    Requests whose Host is not localhost (or one of `allowed_hosts`) are refused."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.requests import ClientDisconnect, Request
        from starlette.responses import FileResponse, Response
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError:
        raise HashpaError("hashpa serve needs Starlette and uvicorn: pip install 'hashpa[serve]'") from None

    service = SearchService(index_dirs, device, engine, milvus, collection)
    hosts = {*LOCAL_HOSTS, *(h.lower().strip("[]") for h in allowed_hosts)}

    async def page(request: Request):
        return FileResponse(STATIC / "index.html")

    async def index_facts(request: Request):
        served = await run_in_threadpool(service.all_served)
        return json_response({"indexes": [s.facts for s in served]})

    uploads = _Slots(UPLOAD_SLOTS, UPLOADS_WAITING)  # uploads read and searched at once, and waiting: a burst holds no more
    thumbnails = _Slots(UPLOAD_SLOTS, UPLOADS_WAITING)

    async def search(request: Request):
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):  # a row: never waits behind uploads
            image, fields = await read_query(request, max_upload_bytes)
            return json_response(await run_in_threadpool(service.answer, image, fields))
        async with uploads:
            image, fields = await read_query(request, max_upload_bytes)
            return json_response(await run_in_threadpool(service.answer, image, fields))

    async def thumbnail(request: Request):
        served = await run_in_threadpool(service.served, request.path_params["name"])
        async with thumbnails:
            picture = await run_in_threadpool(service.thumbnail, served, int(request.path_params["row"]))
        return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    routes = [Route("/", page), Route("/index", index_facts), Route("/search", search, methods=["POST"]),
              Route("/thumb/{name}/{row:int}", thumbnail), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={RequestError: _request_error, HTTPException: _http_error, HashpaError: _failure,
                                                       ClientDisconnect: _disconnected, Exception: _failure})
    app.state.service = service
    return _HostCheck(app, hosts)


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
UPLOAD_SLOTS = 4  # uploads (and thumbnails) handled at once; the decodes among them are fewer still (service.DECODE_SLOTS)
UPLOADS_WAITING = 32  # beyond these many waiting, an upload is answered 503 at once
CONNECTIONS = 512  # open connections; beyond, 503 (and the open-file limit is raised to fit them)
HEADER_SECONDS = 10  # a connection that has not sent its request's headers by then is closed
KEEP_ALIVE_SECONDS = 5


class _Slots:
    """At most `slots` holders at once and `waiting` more in line; past that, a 503 at once."""

    def __init__(self, slots: int, waiting: int):
        import asyncio

        self.semaphore, self.waiting, self.queued = asyncio.Semaphore(slots), waiting, 0

    async def __aenter__(self):
        if self.semaphore.locked() and self.queued >= self.waiting:
            raise RequestError(503, "the server is busy with other uploads: try again in a moment")
        self.queued += 1
        try:
            await self.semaphore.acquire()
        finally:
            self.queued -= 1

    async def __aexit__(self, *exc):
        self.semaphore.release()


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


async def _disconnected(request, error: Exception):
    """A client that left before its request arrived: one line, nothing to answer."""
    log.info("%s %s: the client disconnected before its request arrived", request.method, request.url.path)
    return json_response({"error": "the client disconnected"}, 400)


async def _failure(request, error: Exception):
    """What the server could not do (not a fault of the request): a 500 with the reason, logged."""
    if not isinstance(error, HashpaError):
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return json_response({"error": f"the server could not answer: {error}" if isinstance(error, HashpaError) else "the server could not answer "
                                   "(an internal error, logged by hashpa serve)"}, 500)


def serve(index_dirs: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          max_upload_mb: float = MAX_UPLOAD_BYTES / 2**20, allow_hosts: Sequence[str] = (), engine: str = "auto",
          milvus: str | None = None, collection: str | None = None) -> None:
    """Serve `index_dirs` on http://host:port until interrupted, answering requests for localhost,
    for `host` when it is a name or address of its own, and for `allow_hosts`."""
    own = () if host in ("0.0.0.0", "::", "") else (host,)
    app = create_app(index_dirs, device, int(max_upload_mb * 2**20), [*own, *allow_hosts], engine, milvus, collection)
    import uvicorn

    _raise_open_file_limit(CONNECTIONS + 256)
    log.info("serving %s on http://%s:%d", ", ".join(app.state.service.indexes), host, port)
    uvicorn.Server(server_config(app, host, port)).run()


def server_config(app, host: str, port: int):
    """uvicorn's configuration for `app`: connections bounded in number and in how long they may take
    to send their headers, keep-alive and header size limited."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=_header_timeout_protocol(), limit_concurrency=CONNECTIONS,
                          timeout_keep_alive=KEEP_ALIVE_SECONDS, h11_max_incomplete_event_size=64 * 1024)


def _header_timeout_protocol():
    """uvicorn's HTTP/1.1 protocol, closing a connection that sends no complete request headers within
    HEADER_SECONDS (so connections that never finish them cannot pile up)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeout(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.header_deadline = self.loop.call_later(HEADER_SECONDS, self._headers_late)

        def _headers_late(self):
            if self.cycle is None and not self.transport.is_closing():
                log.info("closed a connection that sent no request headers in %d s", HEADER_SECONDS)
                self.transport.close()

        def connection_lost(self, exc):
            self.header_deadline.cancel()
            super().connection_lost(exc)

    return HeaderTimeout


def _raise_open_file_limit(wanted: int) -> None:
    """The soft open-file limit raised towards `wanted` (up to the hard limit), for CONNECTIONS sockets."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
