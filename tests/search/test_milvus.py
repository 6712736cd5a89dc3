"""Publishing an index directory to Milvus Lite and searching it there, against the directory's own FAISS indexes."""

import numpy as np
import pytest

pytest.importorskip("milvus_lite")

from hashpa.errors import HashpaError  # noqa: E402
from hashpa.indexdir import IndexDir, write_index_dir  # noqa: E402
from hashpa.milvus import MilvusCollection, publish  # noqa: E402
from hashpa.search import modes, open_index  # noqa: E402
from tests.search.test_modes import random_store  # noqa: E402


@pytest.fixture
def published(tmp_path):
    store = random_store(n=400, dim=16, bits=64, duplicates=False)
    write_index_dir(tmp_path / "ix", store, ("Flat",), ("BFlat",))
    uri = str(tmp_path / "m.db")
    summary = publish(tmp_path / "ix", uri, "photos")
    assert (summary.rows, summary.upserted, summary.deleted) == (400, 400, 0)
    return tmp_path / "ix", uri, store


def queries(store, n=20, seed=3):
    rng = np.random.default_rng(seed)
    embeddings = store.embeddings[rng.choice(len(store), n, replace=False)] + 0.1 * rng.standard_normal((n, store.embeddings.shape[1]))
    embeddings = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32)
    return embeddings, rng.integers(0, 256, (n, store.codes.shape[1]), dtype=np.uint8)


def test_milvus_answers_what_faiss_answers(published):
    path, uri, store = published
    embeddings, codes = queries(store)
    ix = IndexDir(path)
    with MilvusCollection(uri, "photos") as collection:
        assert len(collection) == 400
        got, paths = collection.search(embeddings, None, 10, "float")
        want = modes.search_float(ix, embeddings, 10)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        assert paths[0] == [(store.paths[i], store.label_text(i)) for i in want.ids[0]]
        got, _ = collection.search(embeddings, codes, 10, "binary")
        want = modes.search_binary(ix, codes, 10)
        np.testing.assert_array_equal(got.scores, want.scores)  # Hamming ties at the 10th place may hold other rows
        inside = want.scores < want.scores[:, -1:]
        np.testing.assert_array_equal(got.ids[inside], want.ids[inside])
        got, _ = collection.search(embeddings, codes, 5, "rerank", shortlist=400)
        want = modes.search_rerank(ix, embeddings, codes, 5, 400)
        np.testing.assert_array_equal(got.ids, want.ids)


def test_publishing_again_upserts_only_changes_and_deletes_removed_rows(tmp_path, published):
    path, uri, store = published
    assert publish(path, uri, "photos").upserted == 0
    kept = 350
    smaller = random_store(n=400, dim=16, bits=64, duplicates=False)
    smaller.paths, smaller.labels, smaller.embeddings, smaller.codes = (smaller.paths[:kept], smaller.labels[:kept],
                                                                        smaller.embeddings[:kept], smaller.codes[:kept])
    smaller.sizes, smaller.mtimes = smaller.sizes[:kept], smaller.mtimes[:kept].copy()
    smaller.mtimes[0] = 7  # one file changed
    smaller.codes[0] ^= 0xFF
    write_index_dir(tmp_path / "ix2", smaller, ("Flat",), ("BFlat",))
    with open_index(tmp_path / "ix2", milvus=uri, collection="photos") as behind:  # the collection still holds the first index
        with pytest.raises(HashpaError, match="not the current state of .*publish it again"):
            behind.search(smaller.embeddings[:5], kept, "float")
    summary = publish(tmp_path / "ix2", uri, "photos")
    assert (summary.rows, summary.upserted, summary.deleted) == (kept, 1, 50)
    with open_index(tmp_path / "ix2", milvus=uri, collection="photos") as current:
        assert current.search(smaller.embeddings[:5], kept, "float").ids.shape == (5, kept)
    with MilvusCollection(uri, "photos") as collection:
        assert len(collection) == kept
        result, paths = collection.search(smaller.embeddings[:1], smaller.codes[:1], 1, "binary")
        assert result.scores[0, 0] == 0 and paths[0] == [(smaller.paths[0], "c0")]


def test_a_collection_of_another_code_space_is_refused_and_unchanged(tmp_path, published):
    _, uri, _ = published
    other = random_store(n=50, dim=16, bits=32, duplicates=False)
    write_index_dir(tmp_path / "other", other, ("Flat",), ("BFlat",))
    with pytest.raises(HashpaError, match="bits.*32|32.*bits"):
        publish(tmp_path / "other", uri, "photos")
    with MilvusCollection(uri, "photos") as collection:
        assert len(collection) == 400


def test_bad_uris_and_missing_collections_get_clear_errors(tmp_path, published):
    path, uri, _ = published
    with pytest.raises(HashpaError, match="neither a Milvus Lite file"):
        publish(path, str(tmp_path / "m.sqlite"))
    with pytest.raises(HashpaError, match="folder does not exist"):
        publish(path, str(tmp_path / "missing" / "m.db"))
    with pytest.raises(HashpaError, match="no collection nothing"):
        MilvusCollection(uri, "nothing")


def test_publish_and_search_from_the_command_line_answer_as_the_index_does(trained_run, tmp_path):
    import json

    from click.testing import CliRunner

    import hashpa
    from hashpa.cli.main import cli
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "photos", classes=3, per_class=6, size=32)
    hashpa.build_index(folder, trained_run, tmp_path / "idx", workers=0)
    uri = str(tmp_path / "photos.db")
    runner = CliRunner()
    published = runner.invoke(cli, ["publish", str(tmp_path / "idx"), "--milvus", uri])
    assert published.exit_code == 0 and "18 upserted, 0 deleted" in published.output, published.output
    query = str(next(folder.rglob("*.png")))
    for mode in ("float", "binary", "rerank"):
        answers = [json.loads(runner.invoke(cli, ["search", str(tmp_path / "idx"), query, "-k", "3", "--mode", mode, "--json", *extra]).stdout)
                   for extra in ([], ["--milvus", uri])]
        local, milvus = ([(h["path"], h["label"], round(h["score"], 4)) for h in a[0]["hits"]] for a in answers)
        if mode == "binary":  # Hamming ties may hold other rows
            assert [h[2] for h in local] == [h[2] for h in milvus]
        else:
            assert local == milvus
    wrong = runner.invoke(cli, ["search", str(tmp_path / "idx"), query, "--milvus", uri, "--collection", "other"])
    assert wrong.exit_code == 2 and "no collection other" in wrong.output
    asymmetric = runner.invoke(cli, ["search", str(tmp_path / "idx"), query, "--milvus", uri, "--mode", "asymmetric"])
    assert asymmetric.exit_code == 2 and "answers the modes float, binary, rerank" in asymmetric.output

    compared = runner.invoke(cli, ["compare", str(tmp_path / "idx"), "--milvus", uri, "--latency-queries", "2", "--repeats", "1",
                                   "--out", str(tmp_path / "report"), "--json"])
    assert compared.exit_code == 0, compared.output
    rows = {row["method"]: row for row in json.loads(compared.stdout)["methods"]}
    for mode, faiss_method in (("float", "float Flat"), ("rerank", "rerank BFlat")):
        assert rows[f"{mode} milvus"]["recall@1"] == rows[faiss_method]["recall@1"]
    assert rows["binary milvus"]["bytes_per_image"] == 2 and rows["float milvus"]["bytes_per_image"] == 64  # 16 bits, 16 floats


def test_serve_answers_from_the_collection(trained_run, tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    import hashpa
    from hashpa.serve.app import create_app
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "photos", classes=3, per_class=6, size=32)
    hashpa.build_index(folder, trained_run, tmp_path / "idx", workers=0)
    uri = str(tmp_path / "photos.db")
    publish(tmp_path / "idx", uri)
    client = TestClient(create_app([tmp_path / "idx"], milvus=uri), base_url="http://localhost")
    query = folder / "class_01" / "img_004.png"
    answer = client.post("/search", data={"k": "4", "shortlist": "12"}, files={"image": ("q.png", query.read_bytes())}).json()
    assert set(answer["results"]) == {"float", "binary", "rerank"}
    ix = open_index(tmp_path / "idx")
    for mode in ("float", "rerank"):
        expected = ix.search([query], 4, mode, shortlist=12 if mode == "rerank" else None)
        assert [h["row"] for h in answer["results"][mode]["hits"]] == expected.ids[0].tolist(), mode
