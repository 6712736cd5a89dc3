"""hashpa serve against hostile clients: bodies past the limit however they are sent, fields of the
wrong type, foreign Host headers, links out of the indexed folder, NaN in reports, an index updated
while it is served, and a slow upload beside fast requests."""

import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from eval.browser import running_server
from hashpa.indexdir import build_index
from tests.conftest import make_image_folder

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from hashpa.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def base(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("hardening")
    folder = make_image_folder(base / "photos", classes=3, per_class=6, size=40)
    build_index(folder, trained_run, base / "idx", workers=0)
    return base


@pytest.fixture(scope="module")
def client(base):
    return TestClient(create_app([base / "idx"], max_upload_bytes=100_000), base_url="http://localhost")


def png(size: int = 40, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_chunked_body_past_the_limit_is_refused_while_it_streams(client):
    def body():
        for _ in range(100):  # 100 x 64 KiB without a content-length: far past the 100 kB limit
            yield b"x" * 65536

    response = client.post("/search", content=body(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limited to 100,000 bytes" in response.json()["error"]
    assert client.post("/search", json={"row": 1, "k": 2}).status_code == 200


@pytest.mark.parametrize("fields,needle", [
    ({"row": 1, "k": None}, "k must be a whole number, got null"),
    ({"row": 1, "k": ""}, "k must be a whole number, got ''"),
    ({"row": 1, "k": 1.5}, "k must be a whole number, got 1.5"),
    ({"row": 1, "k": True}, "k must be a whole number, got true"),
    ({"row": 1, "k": "3"}, "k must be a whole number, got '3'"),
    ({"row": [1]}, "row must be a whole number"),
    ({"row": {"a": 1}}, "row must be a whole number"),
    ({"row": 1, "index": ["idx"]}, "index must be the name of a served index"),
    ({"row": 1, "index": 3}, "index must be the name of a served index"),
    ({"row": 1, "modes": 7}, "modes must be search modes"),
    ({"row": 1, "modes": ["float", 2]}, "modes must be search modes"),
    ({"row": 1, "modes": ""}, "modes names no search mode"),
    ({"row": 1, "shortlist": -3}, "shortlist must be between"),
    ({"row": -1}, "no indexed row -1"),
    ({"row": 10**30}, "no indexed row"),
    ({"row": 1, "colour": "red"}, "unknown field 'colour'"),
])
def test_every_json_field_of_the_wrong_type_or_range_is_a_json_400(client, fields, needle):
    response = client.post("/search", json=fields)
    assert 400 <= response.status_code < 500 and needle in response.json()["error"], response.text


@pytest.mark.parametrize("body,needle", [
    (b'{"row": 1, "k": Infinity}', "Infinity is not a JSON number"),
    (b'{"row": 1, "k": NaN}', "NaN is not a JSON number"),
    (b'{"row": 1, "k": -Infinity}', "JSON number"),
    (b'{"row": "\xff\xfe"}', "not UTF-8"),
    (b"[" * 50_000 + b"]" * 50_000, "cannot be read"),
    (b'"just a string"', "must be an object"),
])
def test_json_bodies_that_are_not_plain_json_objects_are_a_json_400(client, body, needle):
    response = client.post("/search", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and needle in response.json()["error"], response.text


@pytest.mark.parametrize("data,needle", [
    ({"row": "1.5"}, "row must be a whole number, got '1.5'"),
    ({"row": "1", "k": "true"}, "k must be a whole number, got 'true'"),
    ({"row": "1", "k": "٣"}, "k must be a whole number"),  # an Arabic-Indic digit: not ASCII
    ({"row": "1", "other": "x"}, "unknown field 'other'"),
])
def test_form_fields_are_checked_as_strictly(client, data, needle):
    response = client.post("/search", data=data, files={"image": ("q.png", png())})
    assert response.status_code == 400 and needle in response.json()["error"], response.text


def test_malformed_multipart_is_a_json_400(client):
    response = client.post("/search", content=b"--nope\r\nContent-Disposition: form-data\r\n\r\nx", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400 and "multipart form cannot be read" in response.json()["error"], response.text
    text = client.post("/search", data={"row": "1"}, files={"image": ("a.png", png()), "image2": ("b.png", png())})
    assert text.status_code == 400 and "error" in text.json()


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/nothing-here")
    assert missing.status_code == 404 and "error" in missing.json()
    assert client.get("/search").status_code == 405 and "error" in client.get("/search").json()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""])
def test_requests_for_other_host_names_are_refused(base, host):
    app = create_app([base / "idx"])
    client = TestClient(app, base_url="http://localhost")
    response = client.get("/index", headers={"host": host})
    assert response.status_code == 400 and "--allow-host" in response.json()["error"]
    for allowed in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/index", headers={"host": allowed}).status_code == 200


def test_allow_host_answers_for_that_name(base):
    client = TestClient(create_app([base / "idx"], allowed_hosts=["search.example"]), base_url="http://search.example")
    assert client.get("/index").status_code == 200


def test_a_thumbnail_whose_file_links_out_of_the_folder_is_refused(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=4, size=40)
    outside = tmp_path / "secret.png"
    outside.write_bytes(png(seed=5))
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    target = folder / "class_00" / "img_000.png"
    target.unlink()
    target.symlink_to(outside)  # after indexing: the row's file now leads out of the folder
    client = TestClient(create_app([tmp_path / "idx"]), base_url="http://localhost")
    refused = client.get("/thumb/idx/0")
    assert refused.status_code == 403 and "links outside" in refused.json()["error"]
    assert client.get("/thumb/idx/1").status_code == 200


def test_nan_in_a_compare_report_is_null_in_strict_json(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=4, size=40)
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    (tmp_path / "idx" / "compare.json").write_text('{"methods": [{"method": "float Flat", "recall@1": NaN, "map@r": Infinity}]}')
    client = TestClient(create_app([tmp_path / "idx"]), base_url="http://localhost")
    response = client.get("/index")
    assert response.status_code == 200 and b"NaN" not in response.content and b"Infinity" not in response.content
    figures = json.loads(response.content)["indexes"][0]["compare"]
    assert figures[0]["recall@1"] is None and figures[0]["map@r"] is None


def test_an_index_updated_while_served_is_answered_from_its_new_generation(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=4, size=40)
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    first = {p.name for p in (tmp_path / "idx").glob("gen-*")}
    client = TestClient(create_app([tmp_path / "idx"]), base_url="http://localhost")
    assert client.get("/index").json()["indexes"][0]["items"] == 8
    make_image_folder(folder, classes=3, per_class=4, size=40)  # a new class of 4 images
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    assert {p.name for p in (tmp_path / "idx").glob("gen-*")} > first  # the served generation stays while it is held
    assert client.get("/index").json()["indexes"][0]["items"] == 12
    answer = client.post("/search", json={"row": 11, "k": 12, "modes": "float"}).json()
    assert sorted(h["row"] for h in answer["results"]["float"]["hits"]) == list(range(12))
    build_index(folder, trained_run, tmp_path / "idx", workers=0)  # the server has let go of the first generation: it goes
    left = {p.name for p in (tmp_path / "idx").glob("gen-*")}
    assert len(left) == 2 and not left & first


def test_a_slow_upload_does_not_hold_up_fast_requests(base):
    """A large upload (decoded and embedded in a worker thread) while /index is asked again and
    again: even the slowest fast call (so its p99 too) stays far below the upload's decoding time."""
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (750, 750, 3), dtype=np.uint8)).resize((6000, 6000))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG")  # 36 megapixels: a good part of a second to decode and resize
    upload = buffer.getvalue()
    with running_server([base / "idx"], max_upload_bytes=len(upload) + 1) as address:
        slow_done = threading.Event()
        slow_status = []

        def slow():
            with httpx.Client(timeout=60) as http:
                slow_status.append(http.post(f"{address}/search", files={"image": ("big.jpg", upload)}, data={"k": "3"}).status_code)
            slow_done.set()

        thread = threading.Thread(target=slow)
        thread.start()
        times = []
        with httpx.Client(timeout=30) as http:
            deadline = time.perf_counter() + 30
            while not slow_done.is_set() and time.perf_counter() < deadline:
                started = time.perf_counter()
                assert http.get(f"{address}/index").status_code == 200
                times.append(time.perf_counter() - started)
        thread.join(timeout=60)
    assert slow_status == [200]
    assert len(times) >= 5, "the slow upload finished before the fast calls could be measured"
    assert max(times) < 0.3, f"fast calls waited on the upload: the slowest took {sorted(times)[-3:]} s"  # a stall would be one call
