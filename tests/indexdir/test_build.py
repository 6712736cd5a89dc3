"""hashpa index on generated folders: contents, incremental updates, resuming, unreadable files."""

import json
import os

import numpy as np
import pytest

import hashpa
import hashpa.indexdir.partial
from hashpa.errors import HashpaError
from hashpa.indexdir import IndexDir, build_index, read_store
from tests.conftest import index_file, make_image_folder, stripe_image


def index(folder, run, out, *float_and_binary, **settings):
    """build_index with the float and binary factory strings given by position."""
    if float_and_binary:
        settings["float_indexes"], settings["binary_indexes"] = float_and_binary
    return build_index(folder, run, out, **settings)


def test_index_writes_store_indexes_and_metadata(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=3, per_class=5)
    summary = index(folder, trained_run, tmp_path / "idx", ("Flat", "HNSW32"), ("BFlat", "BHNSW32"), workers=0)
    assert summary.rows == 15 and summary.embedded == 15 and summary.reused == 0
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    generation = meta["store"].split("/")[0]
    assert {p.name for p in (tmp_path / "idx").iterdir()} == {generation, "index.json", ".hashpa.lock", ".hashpa.json"}
    names = {p.name for p in (tmp_path / "idx" / generation).iterdir()}
    assert names == {"store.h5", "float-Flat.faiss", "float-HNSW32.faiss", "binary-BFlat.faiss", "binary-BHNSW32.faiss"}
    store = read_store(index_file(tmp_path / "idx", "store.h5"))
    assert meta["store_id"] == store.attrs["store_id"] and meta["bits"] == 16
    assert store.paths[0] == "class_00/img_000.png" and store.class_names == ["class_00", "class_01", "class_02"]
    assert list(store.labels[:6]) == [0, 0, 0, 0, 0, 1]
    assert store.attrs["backbone"] == "smallcnn" and store.attrs["preprocessing"]["input_size"] == 32
    # every stored row equals a fresh embedding of its file
    from hashpa.data.folder import Sample
    from hashpa.embed import embed_all
    from hashpa.runs import load_network

    model, _ = load_network(trained_run)
    embeddings, codes, _, _ = embed_all(model, [Sample(folder / p, -1) for p in store.paths], model.embedding.weight.device)
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["folder"] == str(folder.resolve()) and meta["folder_from_index"] == "../images"
    np.testing.assert_allclose(store.embeddings, embeddings, atol=1e-5)
    np.testing.assert_array_equal(store.codes, codes)


def test_incremental_runs_embed_only_new_or_changed_files_and_drop_deleted(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=4)
    out = tmp_path / "idx"
    index(folder, trained_run, out, workers=0)
    before = read_store(index_file(out, "store.h5"))

    (folder / "class_00" / "img_001.png").unlink()
    stripe_image(1, np.random.default_rng(9)).save(folder / "class_01" / "new.png")
    changed = folder / "class_01" / "img_002.png"
    stripe_image(0, np.random.default_rng(10)).save(changed)
    os.utime(changed, ns=(1, 1))
    summary = index(folder, trained_run, out, workers=0)
    assert (summary.embedded, summary.reused, summary.removed, summary.rows) == (2, 6, 1, 8)
    after = read_store(index_file(out, "store.h5"))
    assert "class_00/img_001.png" not in after.paths and "class_01/new.png" in after.paths
    kept = after.paths.index("class_00/img_000.png")
    np.testing.assert_array_equal(after.embeddings[kept], before.embeddings[before.paths.index("class_00/img_000.png")])
    assert index(folder, trained_run, out, workers=0).embedded == 0
    assert IndexDir(out).faiss_index("binary", "BFlat").ntotal == 8


def test_an_interrupted_run_resumes_without_redoing_finished_batches(trained_run, tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=10)
    original = hashpa.indexdir.partial.PartialBatches.write
    written = []

    def crash_after_two_batches(self, rows):
        if len(written) == 2:
            raise KeyboardInterrupt
        original(self, rows)
        written.append(len(rows))

    monkeypatch.setattr(hashpa.indexdir.partial.PartialBatches, "write", crash_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        index(folder, trained_run, tmp_path / "idx", batch_size=4, workers=0)
    assert not (tmp_path / "idx" / "index.json").exists()
    monkeypatch.setattr(hashpa.indexdir.partial.PartialBatches, "write", original)
    summary = index(folder, trained_run, tmp_path / "idx", batch_size=4, workers=0)
    assert summary.reused == 8 and summary.embedded == 12 and summary.rows == 20
    assert not list((tmp_path / "idx").glob(".partial-*"))


def test_unreadable_files_are_skipped_and_reported(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=3)
    (folder / "class_00" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    summary = index(folder, trained_run, tmp_path / "idx", workers=0)
    assert summary.rows == 6 and summary.skipped == ["class_00/broken.jpg"]


def test_empty_folder_is_a_clear_error(trained_run, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HashpaError, match="no images found"):
        index(tmp_path / "empty", trained_run, tmp_path / "idx")


def test_device_decoding_matches_pil_decoding(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=4, size=48)
    from PIL import Image

    Image.open(folder / "class_00" / "img_000.png").convert("RGB").save(folder / "class_00" / "photo.jpg", quality=95)
    (folder / "class_01" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    pil = index(folder, trained_run, tmp_path / "pil", workers=0)
    device = index(folder, trained_run, tmp_path / "device", workers=0, decode="device")
    assert device.rows == pil.rows == 9 and device.skipped == pil.skipped == ["class_01/broken.jpg"]
    a, b = read_store(index_file(tmp_path / "pil", "store.h5")), read_store(index_file(tmp_path / "device", "store.h5"))
    assert a.paths == b.paths
    cosine = (a.embeddings * b.embeddings).sum(axis=1)
    assert cosine.min() > 0.98  # the same images; resize implementations differ slightly


def test_codes_fitted_to_the_folder_are_stored_with_their_quantiser_and_indexed(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=3, per_class=10)
    out = tmp_path / "idx"
    index(folder, trained_run, out, workers=0)
    model_codes = read_store(index_file(out, "store.h5")).codes
    summary = index(folder, trained_run, out, codes="itq", workers=0)
    assert summary.embedded == 0  # switching the code source re-uses the embeddings
    store = read_store(index_file(out, "store.h5"))
    assert store.code_source == "itq" and store.attrs["code_source"] == "itq"
    np.testing.assert_array_equal(store.codes, model_codes)  # the model's codes are kept beside them
    np.testing.assert_array_equal(store.fitted.codes, store.fitted.hasher.encode(store.embeddings))
    assert store.fitted.codes.shape == (30, 2) and not np.array_equal(store.fitted.codes, model_codes)
    opened = hashpa.open_index(out)
    assert json.loads((out / "index.json").read_text())["code_source"] == "itq"
    np.testing.assert_array_equal(opened.query_codes(store.embeddings[:3], model_codes[:3]), store.fitted.codes[:3])
    result = opened.search(store.embeddings, 1, "binary")
    np.testing.assert_array_equal(result.scores[:, 0], 0)  # every row finds its own fitted code in the binary index
    index(folder, trained_run, out, workers=0)  # and back: the binary index holds the model's codes again
    back = hashpa.open_index(out)
    assert back.store.fitted is None
    np.testing.assert_array_equal(back.query_codes(store.embeddings, model_codes), model_codes)


def test_fitting_codes_to_too_few_images_is_a_clear_error(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=4)
    with pytest.raises(HashpaError, match="needs more than 16 images.*--codes model"):
        index(folder, trained_run, tmp_path / "idx", codes="itq", workers=0)
    with pytest.raises(HashpaError, match="unknown code source"):
        index(folder, trained_run, tmp_path / "idx", codes="pq", workers=0)
    with pytest.raises(HashpaError, match="use it with --codes itq"):
        index(folder, trained_run, tmp_path / "idx", code_bits=16, workers=0)
    more = make_image_folder(tmp_path / "more", classes=2, per_class=20)
    with pytest.raises(HashpaError, match=r"--code-bits must be a multiple of 8 from 16 to 16 \(the embedding dimension 16\), got 24"):
        index(more, trained_run, tmp_path / "idx", codes="itq", code_bits=24, workers=0)


def test_fitted_codes_may_be_longer_than_the_models():
    from hashpa.indexdir import Store, fit_database_codes

    embeddings = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32)
    fitted = fit_database_codes(embeddings, 48)
    assert fitted.codes.shape == (500, 6) and fitted.hasher.projection.shape == (64, 48)
    ones = np.unpackbits(fitted.codes, axis=1).mean(axis=0)
    assert np.all(np.abs(ones - 0.5) < 0.15)  # PCA-ITQ bits are centred: each splits the data about evenly
    store = Store([f"{i}.png" for i in range(500)], np.zeros(500, np.int32), [], embeddings, np.zeros((500, 2), np.uint8),
                  np.zeros(500, np.int64), np.zeros(500, np.int64), fitted=fitted)
    assert store.bits == 48 and store.code_source == "itq"
