"""hashpa serve's JSON API with Starlette's test client: every mode against the library's own
search, and every kind of bad input."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hashpa.indexdir import build_index
from hashpa.search import open_index
from tests.conftest import make_image_folder

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from hashpa.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def served(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    folder = make_image_folder(base / "photos", classes=3, per_class=10, size=40)
    build_index(folder, trained_run, base / "model-codes", workers=0)
    build_index(folder, trained_run, base / "fitted", workers=0, codes="itq")
    app = create_app([base / "model-codes", base / "fitted"], max_upload_bytes=200_000)
    return TestClient(app, base_url="http://localhost"), base, folder


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_facts_of_every_index(served):
    client, _, _ = served
    facts = {f["name"]: f for f in client.get("/index").json()["indexes"]}
    assert set(facts) == {"model-codes", "fitted"}
    assert facts["model-codes"]["modes"] == ["float", "binary", "rerank"] and facts["fitted"]["modes"][-1] == "asymmetric"
    assert facts["model-codes"]["items"] == 30


def test_the_bytes_per_item_the_page_shows_are_what_compare_measures(served):
    from hashpa.report.comparison import Method, memory_of

    client, base, _ = served
    facts = {f["name"]: f for f in client.get("/index").json()["indexes"]}
    for name, methods in (("model-codes", [Method("", "float", "Flat"), Method("", "binary", "BFlat"), Method("", "rerank", "BFlat", 20)]),
                          ("fitted", [Method("", "asymmetric", None)])):
        with open_index(base / name) as ix:
            shown = facts[name]["bytes_per_item"]
            assert all(shown[m.mode] == pytest.approx(memory_of(ix, m)["bytes_per_image"], abs=0.05) for m in methods)
    shown = facts["model-codes"]["bytes_per_item"]
    assert 64 <= shown["float"] < 64 + 4 and 2 <= shown["binary"] < 2 + 4  # 16 float32s, 16 bits: the files' headers aside
    assert shown["rerank"] == pytest.approx(shown["binary"] + 64, abs=0.1)  # the binary index and every float embedding
    assert 2 <= facts["fitted"]["bytes_per_item"]["asymmetric"] < 2.1  # the codes; their quantiser is kept once, not per item


@pytest.mark.parametrize("name", ["model-codes", "fitted"])
def test_every_mode_answers_as_the_library_does(served, name):
    client, base, folder = served
    ix = open_index(base / name)
    query = folder / "class_01" / "img_004.png"
    answer = client.post("/search", data={"index": name, "k": "5", "shortlist": "12"}, files={"image": ("q.png", query.read_bytes())}).json()
    assert set(answer["results"]) == set(ix.modes) and answer["query"]["code"] == "".join(f"{b:08b}" for b in ix.embed([query])[1][0])
    for mode, result in answer["results"].items():
        expected = ix.search([query], 5, mode, shortlist=12 if mode in ("rerank", "asymmetric") else None)
        assert [h["row"] for h in result["hits"]] == expected.ids[0].tolist(), mode
        np.testing.assert_allclose([h["score"] for h in result["hits"]], expected.scores[0], rtol=1e-6)
        assert result["ms"] >= 0 and all(h["correct"] is None for h in result["hits"])  # an upload has no label


def test_an_indexed_row_as_the_query_marks_hits_right_and_wrong(served):
    client, base, _ = served
    ix = open_index(base / "model-codes")
    answer = client.post("/search", json={"index": "model-codes", "row": 12, "k": 4, "modes": "float,binary"}).json()
    assert answer["query"]["label"] == "class_01" and list(answer["results"]) == ["float", "binary"]
    hits = answer["results"]["float"]["hits"]
    assert hits[0]["row"] == 12 and hits[0]["correct"] is True
    assert [h["row"] for h in hits] == ix.search(ix.directory.float_rows([12]), 4, "float").ids[0].tolist()
    assert all(h["correct"] == (h["label"] == "class_01") for h in hits)


def test_thumbnails_come_from_store_rows_only(served):
    client, _, _ = served
    thumb = client.get("/thumb/model-codes/3")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(thumb.content)).size == (40, 40)
    assert client.get("/thumb/model-codes/30").status_code == 404
    assert client.get("/thumb/nothing/0").status_code == 404
    for sneaky in ("/thumb/model-codes/..%2F..%2Fetc%2Fpasswd", "/thumb/model-codes/-1", "/thumb/../../etc/passwd"):
        assert client.get(sneaky).status_code == 404


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "class_00/../../x.png"])
def test_a_store_path_leaving_the_folder_is_refused(served, monkeypatch, path):
    client, _, _ = served
    ix = client.app.state.service.indexes["model-codes"].index
    monkeypatch.setattr(ix.store, "paths", [path, *ix.store.paths[1:]])
    assert client.get("/thumb/model-codes/0").status_code == 403
    assert client.get("/thumb/model-codes/1").status_code == 200


def bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("request_kwargs,status,needle", [
    ({"files": {"image": ("x.png", b"not an image at all")}}, 400, "not an image"),
    ({"files": {"image": ("x.png", b"")}}, 400, "empty"),
    ({"files": {"image": ("x.png", png(Image.new("RGB", (30, 30)))[:60])}}, 400, "not an image"),
    ({"files": {"image": ("x.png", bomb())}}, 400, "pixel limit"),
    ({"files": {"image": ("x.png", b"\x00" * 300_000)}}, 413, "limited to"),
    ({"json": {"row": 999}}, 404, "no indexed row 999"),
    ({"json": {"row": "seven"}}, 400, "row must be a whole number"),
    ({"json": {"row": 1, "modes": "float,cosine"}}, 400, "unknown or unavailable mode cosine"),
    ({"json": {"row": 1, "modes": "asymmetric"}}, 400, "unavailable mode asymmetric"),
    ({"json": {"row": 1, "k": 0}}, 400, "k must be between 1"),
    ({"json": {"row": 1, "shortlist": 0}}, 400, "shortlist must be between"),
    ({"json": {"row": 1, "index": "other"}}, 404, "no index named 'other'"),
    ({"json": {}}, 400, "give an image"),
    ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 400, "JSON body"),
    ({"content": b"row=1", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
])
def test_bad_requests_get_a_clear_json_error_and_the_server_keeps_serving(served, request_kwargs, status, needle):
    client, _, _ = served
    response = client.post("/search", **request_kwargs)
    assert response.status_code == status and needle in response.json()["error"], response.text
    assert client.post("/search", json={"row": 2, "k": 1}).status_code == 200


def test_concurrent_requests_get_the_same_answers_as_one_at_a_time(served):
    from concurrent.futures import ThreadPoolExecutor

    client, _, _ = served
    alone = [client.post("/search", json={"row": row, "k": 5}).json()["results"] for row in range(12)]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda row: client.post("/search", json={"row": row, "k": 5}).json()["results"], range(12)))
    strip = lambda results: {m: [h["row"] for h in r["hits"]] for m, r in results.items()}  # noqa: E731
    assert [strip(r) for r in together] == [strip(r) for r in alone]
