"""hashpa serve holds its memory and stays responsive under hostile clients: large photos decoded at
a reduced scale and huge ones refused, a bounded number of uploads at once (the rest wait or get a
503), searches of indexed rows that never wait behind uploads, connections that never send their
headers closed, bodies that never arrive refused, request fields bounded."""

import asyncio
import io
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from eval.browser import running_server
from hashpa.data.decode import ImageError, decode_image
from hashpa.indexdir import build_index
from tests.conftest import make_image_folder

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from hashpa.serve import app as app_module  # noqa: E402
from hashpa.serve import requests as requests_module  # noqa: E402
from hashpa.serve import service as service_module  # noqa: E402
from hashpa.serve.app import create_app  # noqa: E402
from hashpa.serve.requests import RequestError  # noqa: E402


@pytest.fixture(scope="module")
def index_dir(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("bounds")
    folder = make_image_folder(base / "photos", classes=3, per_class=6, size=40)
    build_index(folder, trained_run, base / "idx", workers=0)
    return base / "idx"


def jpeg(width: int, height: int) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    buffer = io.BytesIO()
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_still_larger_than_asked():
    picture = decode_image(jpeg(2400, 1600), at_least=150)
    assert picture.size == (300, 200)  # 1/8 of each side: the smallest scale whose short side is still >= 150
    assert decode_image(jpeg(2400, 1600)).size == (2400, 1600)


def test_more_pixels_than_accepted_are_refused_after_the_reduction():
    with pytest.raises(ImageError, match="pixels accepted here"):
        decode_image(jpeg(400, 300), max_pixels=100_000)
    assert decode_image(jpeg(4000, 300), at_least=30, max_pixels=100_000).size == (500, 38)  # reduced first, then within


def test_an_upload_with_too_many_pixels_is_a_413(index_dir, monkeypatch):
    monkeypatch.setattr(service_module, "MAX_QUERY_PIXELS", 10_000)
    png = io.BytesIO()
    Image.new("RGB", (200, 200)).save(png, format="PNG")  # a PNG has no reduced decoding
    client = TestClient(create_app([index_dir]), base_url="http://localhost")
    answer = client.post("/search", files={"image": ("big.png", png.getvalue(), "image/png")})
    assert answer.status_code == 413 and "pixels accepted here" in answer.json()["error"]


def test_searches_of_rows_never_wait_behind_slow_uploads(index_dir, monkeypatch):
    real = service_module._decoded

    def slow(data, input_size):
        time.sleep(1.5)
        return real(data, input_size)

    monkeypatch.setattr(service_module, "_decoded", slow)
    client = TestClient(create_app([index_dir]), base_url="http://localhost")
    uploads = [threading.Thread(target=lambda: client.post("/search", files={"image": ("a.jpg", jpeg(64, 64), "image/jpeg")})) for _ in range(4)]
    for thread in uploads:
        thread.start()
    time.sleep(0.3)  # the uploads are decoding
    started = time.perf_counter()
    answer = client.post("/search", json={"row": 0, "k": 3})
    row_seconds = time.perf_counter() - started
    facts = client.get("/index")
    for thread in uploads:
        thread.join()
    assert answer.status_code == 200 and facts.status_code == 200
    assert row_seconds < 1.0


def test_uploads_past_the_waiting_line_are_answered_503_at_once():
    async def scenario():
        slots = app_module._Slots(1, 1)
        async with slots:
            waiting = asyncio.create_task(slots.__aenter__())
            await asyncio.sleep(0)
            with pytest.raises(RequestError) as refused:
                await slots.__aenter__()
            assert refused.value.status == 503
            waiting.cancel()

    asyncio.run(scenario())


def test_a_request_may_name_a_bounded_number_of_modes(index_dir):
    client = TestClient(create_app([index_dir]), base_url="http://localhost")
    answer = client.post("/search", json={"row": 0, "modes": ["float"] * 17})
    assert answer.status_code == 400 and "at most 16" in answer.json()["error"]
    twice = client.post("/search", json={"row": 0, "modes": ["float", "float"]})
    assert twice.status_code == 200 and list(twice.json()["results"]) == ["float"]


def test_a_connection_that_never_sends_its_headers_is_closed(index_dir, monkeypatch):
    monkeypatch.setattr(app_module, "HEADER_SECONDS", 1)
    with running_server([index_dir]) as address:
        host, port = address.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as idle:
            idle.sendall(b"GET /index HTTP/1.1\r\nHost: localhost\r\n")  # and never the blank line
            time.sleep(1.5)
            assert idle.recv(100) == b""  # closed by the server
        assert httpx.get(f"{address}/index", headers={"Host": "localhost"}).status_code == 200


def test_a_body_that_never_arrives_is_a_408(index_dir, monkeypatch):
    monkeypatch.setattr(requests_module, "BODY_SECONDS", 1)
    with running_server([index_dir]) as address:
        host, port = address.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"row\"")
            answer = b""
            while b"did not arrive" not in answer and (chunk := slow.recv(1000)):  # headers and body may come apart
                answer += chunk
        assert b" 408 " in answer.split(b"\r\n")[0] and b"did not arrive" in answer


def test_a_client_that_leaves_mid_upload_costs_one_log_line(index_dir, caplog):
    import logging

    with caplog.at_level(logging.INFO), running_server([index_dir]) as address:
        host, port = address.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as leaving:
            leaving.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                            b"Content-Length: 100000\r\n\r\n--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n")
            time.sleep(0.3)
        for _ in range(50):
            if any("disconnected" in r.getMessage() for r in caplog.records):
                break
            time.sleep(0.1)
        assert httpx.get(f"{address}/index", headers={"Host": "localhost"}).status_code == 200
    ours = [r for r in caplog.records if r.name.startswith("hashpa") or r.levelno >= logging.ERROR]
    assert len(ours) == 1 and "disconnected" in ours[0].getMessage() and ours[0].exc_info is None, [r.getMessage() for r in ours]
