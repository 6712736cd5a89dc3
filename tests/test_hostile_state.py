"""Hostile state on disk: forged or damaged index.json files, generation folders that are not
hashpa's, outputs aimed at hashpa's own files, copied manifests. Every case ends in a clear error (or
the right result) and changes nothing of the user's; nothing outside an index directory is ever
deleted. With tests/test_hostile_inputs.py this is the second corpus of hostile cases:

    pytest tests/test_hostile_state.py tests/test_hostile_inputs.py -q
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hashpa.indexdir.layout import read_meta
from hashpa.outputs import MANIFEST
from tests.test_bad_inputs import fingerprint_tree, hashpa, photos, runs  # noqa: F401  (fixtures)

GEN = "gen-0123456789abcdef"

# name: how to change index.json's values (a dict) into a forgery
FORGERIES = {
    "a file named ..": lambda v: v["files"].update({"..": {"bytes": 1, "crc32": "0"}}),
    "a file named .": lambda v: v["files"].update({".": {"bytes": 1, "crc32": "0"}}),
    "an absolute file": lambda v: v["files"].update({"/etc/hostname": {"bytes": 1, "crc32": "0"}}),
    "a file one level up": lambda v: v["files"].update({"../victim": {"bytes": 1, "crc32": "0"}}),
    "a file up through a generation": lambda v: v["files"].update({f"{GEN}/../../victim": {"bytes": 1, "crc32": "0"}}),
    "a backslash name": lambda v: v["files"].update({"..\\victim": {"bytes": 1, "crc32": "0"}}),
    "an empty name": lambda v: v["files"].update({"": {"bytes": 1, "crc32": "0"}}),
    "a NUL in a name": lambda v: v["files"].update({"a\0b": {"bytes": 1, "crc32": "0"}}),
    "index.json as a file": lambda v: v["files"].update({"index.json": {"bytes": 1, "crc32": "0"}}),
    "the manifest as a file": lambda v: v["files"].update({MANIFEST: {"bytes": 1, "crc32": "0"}}),
    "a file of another generation": lambda v: v["files"].update({"gen-aaaaaaaaaaaaaaaa/store.h5": {"bytes": 1, "crc32": "0"}}),
    "a file three levels deep": lambda v: v["files"].update({f"{GEN}/a/b": {"bytes": 1, "crc32": "0"}}),
    "a store one level up": lambda v: v.update(store="../store.h5"),
    "an absolute store": lambda v: v.update(store="/tmp/store.h5"),
    "a store in a folder not a generation": lambda v: v.update(store="photos/store.h5"),
    "a store up through a generation": lambda v: v.update(store=f"{GEN}/../../store.h5"),
    "a store of another name": lambda v: v.update(store=f"{GEN}/other.h5"),
    "an index file ..": lambda v: [e.update(file="..") for e in v["indexes"].values()],
    "an index file one level up": lambda v: [e.update(file="../x.faiss") for e in v["indexes"].values()],
    "an index file index.json": lambda v: [e.update(file="index.json") for e in v["indexes"].values()],
    "negative rows": lambda v: v.update(rows=-1),
    "rows as text": lambda v: v.update(rows="12"),
    "rows as a boolean": lambda v: v.update(rows=True),
    "7 bits": lambda v: v.update(bits=7),
    "a huge length": lambda v: v.update(bits=1 << 20),
    "dim 0": lambda v: v.update(dim=0),
    "an unknown code source": lambda v: v.update(code_source="evil"),
    "a checkpoint path": lambda v: v.update(checkpoint="../../x"),
    "an object dtype": lambda v: v.update(embeddings_dtype="object"),
    "a negative class depth": lambda v: v.update(class_depth=-3),
    "negative bytes of a file": lambda v: [r.update(bytes=-1) for r in v["files"].values()],
    "a file record as text": lambda v: v["files"].update({k: "x" for k in v["files"]}),
    "a negative index size": lambda v: [e.update(ntotal=-5) for e in v["indexes"].values()],
}


@pytest.fixture
def built(runs, photos, tmp_path):  # noqa: F811
    """An index inside victim/ beside the user's own files: (index dir, victim folder)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("years of work\n")
    (victim / "photos-backup").mkdir()
    (victim / "photos-backup" / "a.txt").write_text("mine\n")
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", victim / "idx", "--workers", 0).succeeded()
    return victim / "idx", victim


def forge(index_dir: Path, name: str) -> None:
    values = json.loads((index_dir / "index.json").read_text())
    FORGERIES[name](values)
    (index_dir / "index.json").write_text(json.dumps(values))


@pytest.mark.parametrize("name", list(FORGERIES))
def test_an_update_of_a_forged_index_is_refused_and_deletes_nothing(runs, photos, built, name):  # noqa: F811
    index_dir, victim = built
    forge(index_dir, name)
    before = fingerprint_tree(victim)
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", index_dir, "--workers", 0).failed_with("index.json is damaged", "rebuild")
    assert fingerprint_tree(victim) == before


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_search_of_a_forged_index_is_a_clear_error(photos, built, name):  # noqa: F811
    index_dir, _ = built
    forge(index_dir, name)
    hashpa("search", index_dir, photos / "class_00" / "img_000.png").failed_with("index.json is damaged")


@pytest.mark.parametrize("name", list(FORGERIES))
def test_info_of_a_forged_index_is_a_clear_error(built, name):
    index_dir, _ = built
    forge(index_dir, name)
    hashpa("info", index_dir).failed_with("index.json is damaged")


@pytest.mark.parametrize("what", ["a link to the user's folder", "a file", "a folder not named as hashpa names them"])
def test_things_named_like_generations_that_hashpa_did_not_make_survive_an_update(runs, photos, built, what):  # noqa: F811
    index_dir, victim = built
    if what == "a link to the user's folder":
        os.symlink(victim / "photos-backup", index_dir / "gen-ffffffffffffffff")
    elif what == "a file":
        (index_dir / "gen-eeeeeeeeeeeeeeee").write_text("mine\n")
    else:
        (index_dir / "gen-mine").mkdir()
        (index_dir / "gen-mine" / "notes.txt").write_text("mine\n")
    before = fingerprint_tree(victim)
    (photos / "class_00" / "img_000.png").unlink()  # an update that retires the old generation
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", index_dir, "--workers", 0).succeeded()
    after = fingerprint_tree(victim)
    assert {k: v for k, v in before.items() if not k.startswith("idx/")} == {k: v for k, v in after.items() if not k.startswith("idx/")}
    kept = {"a link to the user's folder": "gen-ffffffffffffffff", "a file": "gen-eeeeeeeeeeeeeeee", "a folder not named as hashpa names them": "gen-mine"}
    assert os.path.lexists(index_dir / kept[what])


def test_an_old_layouts_listed_file_that_is_a_link_out_removes_only_the_link(runs, photos, built):  # noqa: F811
    index_dir, victim = built
    values = json.loads((index_dir / "index.json").read_text())
    os.symlink(victim / "photos-backup", index_dir / "old-link.faiss")
    values["files"] = {}
    generation = values["store"].split("/")[0]
    for name in os.listdir(index_dir / generation):  # the layout before generations: files at the top
        shutil.move(index_dir / generation / name, index_dir / name)
    values["store"] = "store.h5"
    for entry in values["indexes"].values():
        entry["file"] = entry["file"].split("/")[-1]
    values["files"]["old-link.faiss"] = {"bytes": 1, "crc32": "0"}
    (index_dir / "index.json").write_text(json.dumps(values))
    read_meta(index_dir)
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", index_dir, "--workers", 0).succeeded()
    assert not os.path.lexists(index_dir / "old-link.faiss") and (victim / "photos-backup" / "a.txt").read_text() == "mine\n"


# ---- outputs never land on hashpa's own state -----------------------------------------------------

def _state_targets(index_dir: Path, run: Path) -> dict[str, Path]:
    generation = index_dir / read_meta(index_dir).store.split("/")[0]
    return {
        "index.json": index_dir / "index.json", "the store": generation / "store.h5", "a new file in a generation": generation / "new.txt",
        "the index manifest": index_dir / MANIFEST, "a FAISS file": next(generation.glob("*.faiss")),
        "best.pt": run / "best.pt", "last.pt": run / "last.pt", "config.json": run / "config.json", "history.jsonl": run / "history.jsonl",
        "the run manifest": run / MANIFEST,
    }


@pytest.mark.parametrize("target", ["index.json", "the store", "a new file in a generation", "the index manifest", "a FAISS file", "best.pt",
                                    "last.pt", "config.json", "history.jsonl", "the run manifest"])
@pytest.mark.parametrize("command", ["export-codes", "search --grid"])
def test_an_output_never_replaces_hashpas_state_even_with_overwrite(runs, photos, built, tmp_path, target, command):  # noqa: F811
    index_dir, _ = built
    run = tmp_path / "run"
    shutil.copytree(runs / "run16", run)
    path = _state_targets(index_dir, run)[target]
    before = {p: p.read_bytes() for p in (index_dir.rglob("*")) if p.is_file()} | {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    if command == "export-codes":
        outcome = hashpa("export-codes", index_dir, path, "--overwrite")
    else:
        outcome = hashpa("search", index_dir, photos / "class_00" / "img_000.png", "--grid", path, "--overwrite")
    outcome.failed_with("the state of", "whatever --overwrite says")
    after = {p: p.read_bytes() for p in (index_dir.rglob("*")) if p.is_file()} | {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {p: b for p, b in after.items() if p.name != ".hashpa.lock"} == {p: b for p, b in before.items() if p.name != ".hashpa.lock"}


def test_an_output_through_a_link_to_hashpas_state_is_refused(built, tmp_path):
    index_dir, _ = built
    os.symlink(index_dir, tmp_path / "shortcut")
    before = (index_dir / "index.json").read_bytes()
    hashpa("export-codes", index_dir, tmp_path / "shortcut" / "index.json", "--overwrite").failed_with("the state of")
    assert (index_dir / "index.json").read_bytes() == before


@pytest.mark.parametrize("inside", ["generation", "partial"])
def test_compare_reports_never_go_inside_a_generation_or_partial_results(built, inside):
    index_dir, _ = built
    folder = index_dir / (read_meta(index_dir).store.split("/")[0] if inside == "generation" else ".partial-0000")
    folder.mkdir(exist_ok=True)
    hashpa("compare", index_dir, "--out", folder).failed_with("the state of")
    assert not (folder / "compare.json").exists()


def test_reports_beside_the_index_are_written(built):
    index_dir, _ = built
    hashpa("compare", index_dir).succeeded()
    assert (index_dir / "compare.json").is_file()


# ---- a manifest copied into a folder of the user's -----------------------------------------------

@pytest.mark.parametrize("files", [["config.json"], ["history.jsonl"], ["config.json", "history.jsonl"]])
def test_a_copied_run_manifest_never_lets_train_replace_the_users_files(runs, photos, tmp_path, files):  # noqa: F811
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(runs / "run16" / MANIFEST, mine / MANIFEST)
    for name in files:
        (mine / name).write_text("my own notes\n")
    before = fingerprint_tree(mine)
    hashpa("train", "--data", photos, "--out", mine, "--epochs", 1, "--backbone", "smallcnn", "--weights", "none", "--workers", 0,
           "--split", "seen").failed_with(str(mine), "hashpa did not write")
    assert fingerprint_tree(mine) == before
