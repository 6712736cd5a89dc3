"""The pieces that keep `hashpa index` in bounded memory: store rows copied out in slabs, FAISS
indexes filled in chunks, and an incremental update that reuses a store's rows through them."""

import numpy as np
import pytest

from hashpa.indexdir import Store, build_index, faiss_files, read_store, write_index_dir
from hashpa.indexdir.faiss_files import build_faiss_index
from hashpa.indexdir.store import StoredRows, read_store_rows
from tests.conftest import index_file


def store_of(rows: int, dim: int = 8, dtype=np.float32) -> Store:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return Store(paths=[f"a/{i:05d}.png" for i in range(rows)], labels=np.zeros(rows, np.int32), class_names=["a"], embeddings=x.astype(dtype),
                 codes=np.packbits(x > 0, axis=1), sizes=np.arange(rows, dtype=np.int64), mtimes=np.arange(rows, dtype=np.int64) * 7)


def test_rows_copied_in_slabs_equal_fancy_indexing(tmp_path, monkeypatch):
    store = store_of(1000)
    write_index_dir(tmp_path, store)
    monkeypatch.setattr(StoredRows, "SLAB_ROWS", 64)  # many slabs, rows on both sides of their edges
    rows = read_store_rows(index_file(tmp_path, "store.h5"))
    assert rows.paths.tolist() == store.paths and np.array_equal(rows.sizes, store.sizes) and rows.attrs["bits"] == 8
    source = np.sort(np.random.default_rng(1).choice(1000, 300, replace=False))
    target_rows = np.random.default_rng(2).permutation(300)
    target = np.full((300, 8), np.nan, np.float32)
    rows.copy_into("embeddings", source, target, target_rows)
    np.testing.assert_array_equal(target[target_rows], store.embeddings[source])


@pytest.mark.parametrize("spec", ["Flat", "HNSW8"])
def test_float16_rows_added_in_chunks_build_the_float32_index(spec, monkeypatch):
    store = store_of(500, dtype=np.float16)
    monkeypatch.setattr(faiss_files, "ADD_ROWS", 64)
    chunked = build_faiss_index("float", store.embeddings, spec)
    whole = build_faiss_index("float", store.embeddings.astype(np.float32), spec)
    queries = store.embeddings[:20].astype(np.float32)
    for left, right in zip(chunked.search(queries, 5), whole.search(queries, 5)):
        np.testing.assert_array_equal(left, right)


def test_an_update_reuses_store_rows_read_in_slabs(trained_run, tmp_path, monkeypatch):
    from tests.conftest import index_file, make_image_folder

    folder = make_image_folder(tmp_path / "photos", classes=3, per_class=8)
    first = build_index(folder, trained_run, tmp_path / "idx", workers=0)
    before = read_store(index_file(tmp_path / "idx", "store.h5"))
    monkeypatch.setattr(StoredRows, "SLAB_ROWS", 5)
    (folder / "class_01" / "img_003.png").unlink()
    make_image_folder(tmp_path / "photos", classes=4, per_class=2, seed=9)  # 2 new images, 6 rewritten
    second = build_index(folder, trained_run, tmp_path / "idx", workers=0)
    after = read_store(index_file(tmp_path / "idx", "store.h5"))
    kept = [p for p in before.paths if p in after.paths and not p.endswith(("img_000.png", "img_001.png"))]
    assert first.embedded == 24 and second.embedded == 8 and len(after) == 25 and kept
    for path in kept:
        np.testing.assert_array_equal(after.embeddings[after.paths.index(path)], before.embeddings[before.paths.index(path)])
