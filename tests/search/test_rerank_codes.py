"""The rerank-codes mode: a Hamming shortlist re-ranked by compressed embeddings, against brute force
and against the float rerank; its specs, its store, and index updates keeping the codes in step."""

import json

import faiss
import h5py
import numpy as np
import pytest

from hashpa.compressed import check_rerank_spec, fit_compressed
from hashpa.errors import HashpaError
from hashpa.indexdir import IndexDir, build_index, read_store, write_index_dir
from hashpa.search import modes, open_index
from tests.conftest import index_file, make_image_folder
from tests.search.test_modes import brute_hamming, random_store


def compressed_index(path, spec, n=300, dim=16, bits=16):
    store = random_store(n=n, dim=dim, bits=bits)
    store.compressed = fit_compressed(store.embeddings, spec)
    write_index_dir(path, store, ("Flat",), ("BFlat",))
    return path


def brute_rerank(queries, decoded, shortlists, k):
    """The k best rows of each shortlist by float64 cosine with the decoded vectors, ties by row."""
    unit = decoded.astype(np.float64) / np.linalg.norm(decoded.astype(np.float64), axis=1, keepdims=True)
    scores = np.einsum("qd,qcd->qc", queries.astype(np.float64), unit[shortlists])
    order = np.lexsort((shortlists, -scores), axis=1)[:, :k]
    return np.take_along_axis(shortlists, order, axis=1), np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("k,shortlist", [(1, 10), (5, 40), (10, 300)])
def test_float16_codes_rerank_the_hamming_shortlist_as_brute_force_does(tmp_path, k, shortlist):
    opened = IndexDir(compressed_index(tmp_path, "float16"))
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    codes = rng.integers(0, 256, (40, 2), dtype=np.uint8)
    result = modes.search_rerank_codes(opened, queries, codes, k, shortlist)
    _, shortlists = brute_hamming(codes, opened.store.codes, shortlist)
    decoded = opened.store.embeddings.astype(np.float16).astype(np.float32)  # what SQfp16 keeps, independently of FAISS
    ids, scores = brute_rerank(queries, decoded, shortlists, k)
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    assert (result.ids == ids).mean() > 0.99  # float32 against float64 may swap near-equal scores
    np.testing.assert_array_equal(result.ids[:, 0], ids[:, 0])


def test_product_quantised_codes_rerank_by_their_decoded_vectors(tmp_path):
    opened = IndexDir(compressed_index(tmp_path, "PQ4", n=600))
    queries = opened.float_rows(np.arange(0, 600, 20))
    codes = opened.store.codes[np.arange(0, 600, 20)]
    result = modes.search_rerank_codes(opened, queries, codes, 5, 50)
    _, shortlists = brute_hamming(codes, opened.store.codes, 50)
    ids, scores = brute_rerank(queries, opened.store.compressed.decode(np.arange(600)), shortlists, 5)
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    np.testing.assert_array_equal(result.ids, ids)
    assert opened.store.compressed.code_size == 4 and opened.store.compressed.codes.shape == (600, 4)


@pytest.mark.parametrize("spec", ["OPQ4,PQ4", "OPQ4,PQ4x4", "RR16,PQ4x4"])
def test_rotated_quantisers_score_the_rotated_query_as_the_decoded_vectors_would(tmp_path, spec):
    opened = IndexDir(compressed_index(tmp_path, spec, n=600))
    compressed = opened.store.compressed
    assert compressed._scoring()[0], "the rotation is applied to the queries, not to every decoded vector"
    queries = opened.float_rows(np.arange(0, 600, 20))
    codes = opened.store.codes[np.arange(0, 600, 20)]
    result = modes.search_rerank_codes(opened, queries, codes, 5, 50)
    _, shortlists = brute_hamming(codes, opened.store.codes, 50)
    ids, scores = brute_rerank(queries, compressed.quantiser.sa_decode(compressed.codes), shortlists, 5)  # back through the rotation
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    assert (result.ids == ids).mean() > 0.99


def test_product_codes_score_by_table_lookup_as_by_their_decoded_vectors(tmp_path):
    compressed = IndexDir(compressed_index(tmp_path, "PQ4", n=600)).store.compressed
    assert compressed._scoring()[2] is not None, "8-bit product codes are scored through the centroid tables"
    rng = np.random.default_rng(5)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    candidates = rng.integers(-1, 600, (7, 30))
    decoded = compressed.decode(np.maximum(candidates, 0).ravel()).reshape(7, 30, 16).astype(np.float64)
    expected = np.einsum("qd,qcd->qc", queries, decoded) / np.linalg.norm(decoded, axis=2)
    scores = compressed.scores(queries, candidates)
    np.testing.assert_allclose(scores[candidates >= 0], expected[candidates >= 0], atol=1e-5)
    assert np.all(scores[candidates < 0] == -np.inf)


def test_fine_codes_answer_as_the_float_rerank_and_report_their_bytes(tmp_path):
    ix = open_index(compressed_index(tmp_path, "SQ8"))
    assert "rerank-codes" in ix.modes
    queries, codes = ix.directory.float_rows(np.arange(0, 300, 7)), ix.store.codes[np.arange(0, 300, 7)]
    compressed = ix.search(queries, 10, "rerank-codes", codes=codes, shortlist=60)
    exact = ix.search(queries, 10, "rerank", codes=codes, shortlist=60)
    assert (compressed.ids == exact.ids).mean() > 0.9
    np.testing.assert_allclose(compressed.scores, exact.scores, atol=0.02)
    binary_file = ix.meta.entry("binary", "BFlat")["bytes"]
    assert modes.kept_bytes(ix.directory, "rerank-codes", "BFlat") == binary_file + 300 * 16 + ix.store.compressed.codec.nbytes


def test_the_mode_needs_an_index_built_with_rerank_codes(tmp_path):
    write_index_dir(tmp_path, random_store())
    ix = open_index(tmp_path)
    assert "rerank-codes" not in ix.modes
    with pytest.raises(HashpaError, match="--rerank-codes SPEC"):
        ix.search(ix.directory.float_rows([0]), 3, "rerank-codes", codes=ix.store.codes[:1])


@pytest.mark.parametrize("spec,message", [
    ("HNSW32", "a search structure, not a code"),
    ("IDMap,PQ4", "a search structure, not a code"),
    ("Flat", "no fewer than the 64 of the float32"),
    ("PQ5", "not a FAISS quantiser of 16-d vectors"),
    ("nonsense", "not a FAISS quantiser"),
    ("", "takes a FAISS factory string"),
])
def test_bad_specs_are_refused_with_what_to_give(spec, message):
    with pytest.raises(HashpaError, match=message):
        check_rerank_spec(spec, 16)


def test_a_quantiser_the_rows_cannot_train_is_refused_clearly():
    with pytest.raises(HashpaError, match="cannot train it on the folder's 100 embeddings.*smaller quantiser"):
        fit_compressed(random_store(n=100).embeddings, "PQ4")


def _forge_store(index_dir, change):
    """Apply change(h5 file) to the store and drop its checksum from index.json, so the contents themselves are checked."""
    with h5py.File(index_file(index_dir, "store.h5"), "r+") as h5:
        change(h5)
    meta = json.loads((index_dir / "index.json").read_text())
    meta["files"].pop(meta["store"])
    (index_dir / "index.json").write_text(json.dumps(meta))


def _replace(h5, name, data):
    del h5[name]
    h5[name] = data


def test_damaged_rerank_codes_are_refused_on_open(tmp_path):
    compressed_index(tmp_path, "SQ8")
    _forge_store(tmp_path, lambda h5: _replace(h5, "rerank/codes", np.zeros((299, 16), np.uint8)))  # past the checksum: the contents are checked too
    with pytest.raises(HashpaError, match="rerank codes are uint8 \\(299, 16\\)"):
        IndexDir(tmp_path)


@pytest.mark.parametrize("change,message", [
    (lambda h5: _replace(h5, "rerank/codec", np.zeros(40, np.uint8)), "rerank quantiser cannot be read"),
    (lambda h5: _replace(h5, "rerank/codec", faiss.serialize_index(faiss.index_factory(8, "SQ8"))), "does not fit its 16-d embeddings"),
])
def test_a_forged_rerank_quantiser_is_refused_on_open_and_changes_nothing(tmp_path, change, message):
    compressed_index(tmp_path, "SQ8")
    _forge_store(tmp_path, change)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(HashpaError, match=message):
        IndexDir(tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_index_json_naming_other_rerank_codes_than_its_store_is_refused(tmp_path):
    compressed_index(tmp_path, "SQ8")
    meta = json.loads((tmp_path / "index.json").read_text())
    meta["rerank_codes"] = "PQ4"
    (tmp_path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(HashpaError, match="does not describe its store: rerank_codes 'PQ4' \\(the store: 'SQ8'\\)"):
        IndexDir(tmp_path)


def test_index_updates_refit_the_codes_of_every_row(trained_run, tmp_path, caplog):
    folder = make_image_folder(tmp_path / "images", classes=3, per_class=8)
    out = tmp_path / "idx"
    with pytest.raises(HashpaError, match="not a FAISS quantiser"):  # refused before anything is embedded
        build_index(folder, trained_run, out, rerank_codes="PQ5", workers=0)
    assert not (out / "index.json").exists()
    build_index(folder, trained_run, out, rerank_codes="PCA4,SQ8", workers=0)
    first_codec = read_store(index_file(out, "store.h5")).compressed.codec
    (folder / "class_00" / "img_000.png").unlink()
    make_image_folder(folder / "class_03", classes=1, per_class=4)
    summary = build_index(folder, trained_run, out, rerank_codes="PCA4,SQ8", workers=0)
    assert summary.embedded == 4 and summary.removed == 1
    store = read_store(index_file(out, "store.h5"))
    assert store.rerank_codes == "PCA4,SQ8" and json.loads((out / "index.json").read_text())["rerank_codes"] == "PCA4,SQ8"
    np.testing.assert_array_equal(store.compressed.codes, store.compressed.quantiser.sa_encode(np.asarray(store.embeddings, np.float32)))
    assert not np.array_equal(store.compressed.codec, first_codec)  # PCA fitted again to the rows as they are now
    build_index(folder, trained_run, out, workers=0)  # rebuilt without: the mode goes with them, and the run says so
    assert "rerank-codes" not in open_index(out).modes
    assert "holds PCA4,SQ8 rerank codes and this run leaves them out" in caplog.text and "--rerank-codes PCA4,SQ8" in caplog.text


def test_the_default_shortlist_of_rerank_codes_is_its_floor_and_grows_with_k(tmp_path):
    opened = IndexDir(compressed_index(tmp_path, "PQ4", n=800))
    queries, codes = opened.float_rows(np.arange(0, 800, 40)), opened.store.codes[np.arange(0, 800, 40)]
    floor = modes.RERANK_CODES_SHORTLIST
    assert modes.default_shortlist("rerank-codes", 5) == floor and modes.default_shortlist("rerank", 5) == 50
    assert modes.default_shortlist("rerank-codes", floor) == modes.SHORTLIST_PER_K * floor
    by_default = modes.search_rerank_codes(opened, queries, codes, 5)
    np.testing.assert_array_equal(by_default.ids, modes.search_rerank_codes(opened, queries, codes, 5, floor).ids)
    assert not np.array_equal(by_default.ids, modes.search_rerank_codes(opened, queries, codes, 5, 50).ids)


def test_compare_measures_the_mode_at_its_default_shortlist_and_counts_its_bytes_per_image(tmp_path):
    from hashpa.report.comparison import compare

    compressed_index(tmp_path / "idx", "PQ4", n=600)
    report = compare(tmp_path / "idx", repeats=1, latency_queries=0, out=tmp_path)
    row = next(r for r in report["methods"] if r["mode"] == "rerank-codes")
    assert row["method"] == "rerank PQ4 BFlat" and row["shortlist"] == modes.RERANK_CODES_SHORTLIST
    binary = next(r for r in report["methods"] if r["method"] == "binary BFlat")
    assert row["bytes_per_image"] == binary["bytes_per_image"] + 4 == 2 + 4  # the code and the rerank code; the codec is kept once
    codec = IndexDir(tmp_path / "idx").store.compressed.codec.nbytes
    assert row["index_bytes"] == binary["index_bytes"] + 600 * 4 + codec
