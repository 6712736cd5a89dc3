"""Readers never see half an update: searches in other processes while hashpa index updates the
same index directory answer from the old or the new generation, never an error; a reader that
holds an index keeps its files; generations nobody holds are removed."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from hashpa.indexdir import build_index
from hashpa.indexdir.open import IndexDir
from hashpa.search import open_index
from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[2]

UPDATES = textwrap.dedent("""
    import sys
    from pathlib import Path
    from eval.synthetic import make_image_folder
    from hashpa.indexdir import build_index
    folder, run, out = map(Path, sys.argv[1:4])
    for round in range(6):
        make_image_folder(folder, classes=2 + round % 3, per_class=6 + round, size=32, seed=round)
        build_index(folder, run, out, workers=0, binary_indexes=("BFlat", "BHNSW16"))
""")


def test_searches_during_updates_answer_from_the_old_or_the_new_index(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=6, size=32)
    build_index(folder, trained_run, tmp_path / "idx", workers=0, binary_indexes=("BFlat", "BHNSW16"))
    held = open_index(tmp_path / "idx")  # opened before every update, searched after them all
    writer = subprocess.Popen([sys.executable, "-c", UPDATES, str(folder), str(trained_run), str(tmp_path / "idx")], cwd=ROOT,
                              stderr=subprocess.PIPE)
    sizes, searches = set(), 0
    while writer.poll() is None or searches == 0:
        with open_index(tmp_path / "idx") as ix:
            query = ix.directory.float_rows([0])
            codes = ix.store.index_codes[[0]]
            for mode, spec in (("float", "Flat"), ("binary", "BFlat")):  # exact: every row, each once
                found = ix.search(query, len(ix), mode, codes=codes, index=spec)
                assert sorted(found.ids[0].tolist()) == list(range(len(ix))), (mode, spec)
            assert ix.search(query, 3, "binary", codes=codes, index="BHNSW16").ids.max() < len(ix)
            sizes.add(len(ix))
            searches += 1
    assert writer.returncode == 0, writer.stderr.read().decode()[-2000:]
    assert len(sizes) >= 2, f"no update landed while searching ({searches} searches saw {sizes})"
    assert len(held) == 12 and held.search(held.directory.float_rows([0]), 3, "binary", codes=held.store.index_codes[[0]], index="BHNSW16").ids[0][0] == 0
    found = held.search(held.directory.float_rows([0]), len(held), "binary", codes=held.store.index_codes[[0]])
    assert sorted(found.ids[0].tolist()) == list(range(12))  # the first generation, still whole
    held.close()
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    assert len(list((tmp_path / "idx").glob("gen-*"))) == 1  # nobody holds the others any more


def test_a_generation_held_by_a_reader_survives_updates_and_goes_after(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=5, size=32)
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    reader = IndexDir(tmp_path / "idx")
    first = Path(reader.meta.store).parent.name
    for seed in (1, 2):
        make_image_folder(folder, classes=2, per_class=5, size=32, seed=seed)  # changed pixels: embedded again
        build_index(folder, trained_run, tmp_path / "idx", workers=0)
    generations = {p.name for p in (tmp_path / "idx").glob("gen-*")}
    assert first in generations and len(generations) == 2  # the held one and the current one; the one between is gone
    assert reader.outdated() and reader.faiss_index("float", "Flat").ntotal == 10
    reader.close()
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    assert first not in {p.name for p in (tmp_path / "idx").glob("gen-*")}


def test_an_index_from_before_generations_is_read_and_then_updated_into_one(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=5, size=32)
    build_index(folder, trained_run, tmp_path / "idx", workers=0)
    idx = tmp_path / "idx"
    meta_text = (idx / "index.json").read_text()
    generation = next(idx.glob("gen-*")).name
    for path in (idx / generation).iterdir():  # the layout before generations: every file at the top
        path.rename(idx / path.name)
    (idx / generation).rmdir()
    (idx / "index.json").write_text(meta_text.replace(f"{generation}/", ""))
    with open_index(idx) as ix:
        before = ix.directory.float_rows(np.arange(10))
    make_image_folder(tmp_path / "more", classes=1, per_class=5, size=32, seed=9).rename(folder / "class_new")
    summary = build_index(folder, trained_run, idx, workers=0)
    assert (summary.reused, summary.embedded) == (10, 5)  # the old store's rows were read
    assert not (idx / "store.h5").exists() and not list(idx.glob("*.faiss"))  # the old top-level files are gone
    with open_index(idx) as ix:
        assert len(ix) == 15 and np.array_equal(ix.directory.float_rows(np.arange(10)), before)
