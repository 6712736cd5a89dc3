"""hashpa serve in headless Chromium: an uploaded query and a clicked gallery photo; the columns
show the API's results, marked right and wrong as the API says."""

import pytest

from eval.browser import browser_missing, query_in_browser, running_server
from hashpa.indexdir import build_index
from tests.conftest import make_image_folder

pytest.importorskip("starlette")

MODES = ["float", "binary", "rerank", "asymmetric"]


def test_the_page_shows_what_the_api_answers(trained_run, tmp_path):
    missing = browser_missing()
    if missing:
        pytest.skip(f"no browser: {missing}")
    import httpx

    folder = make_image_folder(tmp_path / "photos", classes=3, per_class=6, size=40)
    build_index(folder, trained_run, tmp_path / "idx", workers=0, codes="itq")
    query = folder / "class_02" / "img_001.png"
    with running_server([tmp_path / "idx"]) as address:
        uploaded = query_in_browser(address, query, tmp_path / "page.png")
        clicked = query_in_browser(address, 5)
        facts = httpx.get(address + "/index").json()["indexes"][0]
        by_upload = httpx.post(address + "/search", data={"k": "8", "modes": ",".join(MODES)}, files={"image": ("q.png", query.read_bytes())}).json()
        by_row = httpx.post(address + "/search", json={"k": 8, "modes": ",".join(MODES), "row": facts["sample_rows"][5]}).json()
    marks = {True: "right", False: "wrong", None: "unknown"}
    for shown, answer in ((uploaded, by_upload), (clicked, by_row)):
        assert list(shown) == MODES
        assert shown == {mode: [(hit["row"], marks[hit["correct"]]) for hit in result["hits"]] for mode, result in answer["results"].items()}
    assert {mark for hits in clicked.values() for _, mark in hits} >= {"right"}
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "page.png").stat().st_size > 10_000
