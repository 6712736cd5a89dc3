"""Trust: nothing of the user's overwritten, paths that mean the same from anywhere, writes that a
full disk cannot tear, and no silent wrong answer. Each case is a hostile use of a command; with
tests/test_bad_inputs.py this is the corpus of hostile cases (count them with
``pytest tests/test_bad_inputs.py tests/test_trust.py tests/test_api_inputs.py tests/serve/test_hardening.py --co -q``)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashpa import fileio
from hashpa.indexdir import read_store
from hashpa.outputs import MANIFEST
from tests.conftest import index_file, make_image_folder
from tests.test_bad_inputs import TINY, fingerprint_tree, hashpa, photos, runs  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def indexed(runs, photos, tmp_path):  # noqa: F811
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()
    return tmp_path / "idx"


def query(photos) -> Path:  # noqa: F811
    return photos / "class_00" / "img_000.png"


# ---- one write rule -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["best.pt", "store", "photo", "notes"])
def test_a_grid_never_replaces_a_file_hashpa_did_not_write(runs, photos, indexed, tmp_path, target):  # noqa: F811
    copy = tmp_path / "run"
    shutil.copytree(runs / "run16", copy)
    (tmp_path / "notes.png").write_bytes(b"my notes")
    path = {"best.pt": copy / "best.pt", "store": index_file(indexed, "store.h5"), "photo": photos / "class_01" / "img_002.png",
            "notes": tmp_path / "notes.png"}[target]
    before = path.read_bytes()
    why = ("the state of",) if target in ("best.pt", "store") else ("hashpa did not write", "--overwrite")
    hashpa("search", indexed, query(photos), "--grid", path).failed_with(str(path), *why)
    assert path.read_bytes() == before


def test_a_grid_hashpa_wrote_is_replaced_and_an_edited_one_needs_overwrite(photos, indexed, tmp_path):  # noqa: F811
    grid = tmp_path / "out" / "grid.png"
    hashpa("search", indexed, query(photos), "--grid", grid).succeeded()
    hashpa("search", indexed, query(photos), "--grid", grid, "-k", "3").succeeded()  # its own: replaced
    Image.new("RGB", (5, 5)).save(grid)  # somebody edits it: theirs now
    edited = grid.read_bytes()
    hashpa("search", indexed, query(photos), "--grid", grid).failed_with("changed since", "--overwrite")
    assert grid.read_bytes() == edited
    hashpa("search", indexed, query(photos), "--grid", grid, "--overwrite").succeeded()
    assert grid.read_bytes() != edited


def test_export_codes_never_replaces_the_users_file(indexed, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    hashpa("export-codes", indexed, notes).failed_with("notes.txt already exists", "--overwrite")
    assert notes.read_text() == "my notes\n"
    hashpa("export-codes", indexed, notes, "--overwrite").succeeded()
    assert len(notes.read_text().splitlines()) == 18
    hashpa("export-codes", indexed, notes, "--format", "binary").succeeded()  # hashpa's own now
    assert notes.stat().st_size == 18 * 2


@pytest.mark.parametrize("files", [["config.json"], ["history.jsonl"], ["config.json", "history.jsonl", "notes.txt"]])
def test_train_out_holding_the_users_files_is_refused(photos, tmp_path, files):  # noqa: F811
    (tmp_path / "mine").mkdir()
    for name in files:
        (tmp_path / "mine" / name).write_text('{"mine": true}\n')
    before = fingerprint_tree(tmp_path / "mine")
    hashpa("train", "--data", photos, "--out", tmp_path / "mine", *TINY).failed_with("holds files hashpa did not write", "new or empty folder")
    assert fingerprint_tree(tmp_path / "mine") == before


def test_train_out_never_writes_into_an_index_or_the_image_folder(photos, indexed, tmp_path):  # noqa: F811
    hashpa("train", "--data", photos, "--out", indexed, *TINY).failed_with("is a hashpa index directory, not a hashpa run directory")
    before = fingerprint_tree(photos)
    hashpa("train", "--data", photos, "--out", photos, *TINY).failed_with("holds files hashpa did not write")
    assert fingerprint_tree(photos) == before


def test_index_out_never_writes_into_a_run_directory(runs, photos, tmp_path):  # noqa: F811
    copy = tmp_path / "run"
    shutil.copytree(runs / "run16", copy)
    before = fingerprint_tree(copy)
    hashpa("index", photos, "--run-dir", copy, "--out", copy, "--workers", 0).failed_with("is a hashpa run directory, not a hashpa index directory")
    assert fingerprint_tree(copy) == before


def test_compare_and_eval_refuse_the_users_report_files_before_measuring(runs, indexed, tmp_path):  # noqa: F811
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "compare.md").write_text("my table")
    (tmp_path / "reports" / "eval.json").write_text("{}")
    before = fingerprint_tree(tmp_path / "reports")
    hashpa("compare", indexed, "--out", tmp_path / "reports").failed_with("compare.md already exists", "--overwrite")
    hashpa("eval", runs / "run16", "--out", tmp_path / "reports", "--workers", 0).failed_with("eval.json already exists", "--overwrite")
    assert fingerprint_tree(tmp_path / "reports") == before
    hashpa("compare", indexed, "--out", tmp_path / "reports", "--overwrite", "--repeats", 1, "--latency-queries", 0).succeeded()
    hashpa("compare", indexed, "--out", tmp_path / "reports", "--repeats", 1, "--latency-queries", 0).succeeded()  # its own now
    assert "| float Flat |" in (tmp_path / "reports" / "compare.md").read_text()


def test_an_index_inside_its_image_folder_never_indexes_its_own_outputs(runs, photos, tmp_path):  # noqa: F811
    out = photos / "index"
    first = json.loads(hashpa("index", photos, "--run-dir", runs / "run16", "--out", out, "--workers", 0, "--json").succeeded().stdout)
    hashpa("compare", out, "--repeats", 1, "--latency-queries", 0).succeeded()  # compare.png inside the image folder
    hashpa("search", out, query(photos), "--grid", photos / "class_00" / "grid.png").succeeded()  # a grid among the photos
    again = json.loads(hashpa("index", photos, "--run-dir", runs / "run16", "--out", out, "--workers", 0, "--json").succeeded().stdout)
    assert first["rows"] == again["rows"] == 18 and again["embedded"] == 0
    assert read_store(index_file(out, "store.h5")).class_names == ["class_00", "class_01", "class_02"]
    from hashpa.data.folder import list_images

    assert len(list_images(photos).images) == 18  # nor does training, which lists the folder the same way


def test_outputs_written_inside_an_image_folder_are_not_trained_on(photos, tmp_path):  # noqa: F811
    from hashpa.data.folder import list_images

    before = list_images(photos).images
    hashpa("train", "--data", photos, "--out", photos / "runs" / "a", *TINY).succeeded()
    (photos / "class_00" / "grid.png").write_bytes(b"")
    fileio.write_json_atomic(photos / "class_00" / MANIFEST, {"folder": None, "files": {"grid.png": fileio.checksum(photos / "class_00" / "grid.png")}})
    assert list_images(photos).images == before


# ---- paths that mean the same thing from anywhere --------------------------------------------------

def _train_here(cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hashpa.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_run_trained_on_a_relative_folder_reads_that_folder_from_anywhere(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    make_image_folder(work / "photos", classes=3, per_class=8, size=32)
    make_image_folder(elsewhere / "photos", classes=5, per_class=4, size=32, seed=7)  # another folder of the same name
    trained = _train_here(work, "train", "--data", "photos", "--out", "run", *TINY)
    assert trained.returncode == 0, trained.stderr
    config = json.loads((work / "run" / "config.json").read_text())
    assert config["data"] == str((work / "photos").resolve()) and config["data_from_run"]["data"] == "../photos"
    evaluated = _train_here(elsewhere, "eval", work / "run", "--json", "--workers", 0)
    assert evaluated.returncode == 0, evaluated.stderr
    assert str((work / "photos").resolve()) in json.loads(evaluated.stdout)["split"]
    indexed = _train_here(elsewhere, "index", "--split", "test", "--run-dir", work / "run", "--out", "idx", "--workers", 0, "--json")
    assert indexed.returncode == 0, indexed.stderr
    assert set(read_store(index_file(elsewhere / "idx", "store.h5")).class_names) <= {"class_00", "class_01", "class_02"}
    resumed = _train_here(elsewhere, "train", "--resume", work / "run", "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr


def test_a_run_moved_with_its_data_still_works_and_a_missing_folder_is_a_clear_error(photos, tmp_path):  # noqa: F811
    project = tmp_path / "project"
    project.mkdir()
    shutil.move(str(photos), project / "photos")
    hashpa("train", "--data", project / "photos", "--out", project / "run", *TINY).succeeded()
    moved = tmp_path / "moved"
    shutil.move(str(project), moved)
    hashpa("eval", moved / "run", "--workers", 0).succeeded()
    shutil.rmtree(moved / "photos")
    hashpa("eval", moved / "run", "--workers", 0).failed_with("the data folder of the run", "is no longer at", "move it back")
    hashpa("index", "--split", "test", "--run-dir", moved / "run", "--out", tmp_path / "idx").failed_with("is no longer at")


def test_a_config_with_a_relative_data_folder_from_before_is_a_clear_error(runs, tmp_path):  # noqa: F811
    copy = tmp_path / "run"
    shutil.copytree(runs / "run16", copy)
    config = json.loads((copy / "config.json").read_text())
    config["data"] = "photos"
    config.pop("data_from_run")
    (copy / "config.json").write_text(json.dumps(config))
    hashpa("eval", copy, "--workers", 0).failed_with("relative to wherever training ran", "--data")


def test_an_index_moved_with_its_run_finds_the_model(runs, photos, tmp_path):  # noqa: F811
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(runs / "run16", project / "run")
    hashpa("index", photos, "--run-dir", project / "run", "--out", project / "idx", "--workers", 0).succeeded()
    shutil.move(str(project), tmp_path / "moved")
    hashpa("search", tmp_path / "moved" / "idx", query(photos), "-k", 2).succeeded()


# ---- writes that a full disk cannot tear -------------------------------------------------------------

def _fail_writes(monkeypatch, after: int = 0):
    """Every flush to disk through hashpa's atomic writes fails with ENOSPC (after `after` successes)."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_an_index_update_that_cannot_write_leaves_the_index_as_it_was(runs, photos, indexed, monkeypatch, after):  # noqa: F811
    before = fingerprint_tree(indexed)
    make_image_folder(photos, classes=4, per_class=6, size=40)
    _fail_writes(monkeypatch, after)
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", indexed, "--workers", 0).failed_with("No space left on device", "run the same command again")
    monkeypatch.undo()
    assert {k: v for k, v in fingerprint_tree(indexed).items() if k in before} == before  # nothing replaced
    assert not [p for p in indexed.rglob("*") if fileio.TEMPORARY_MARK in p.name]
    hashpa("search", indexed, query(photos), "-k", 3).succeeded()


def test_a_checkpoint_that_cannot_be_written_stops_training_with_a_clear_error(photos, tmp_path, monkeypatch):  # noqa: F811
    _fail_writes(monkeypatch, after=3)  # the config, the history, then a checkpoint
    hashpa("train", "--data", photos, "--out", tmp_path / "run", *TINY).failed_with("cannot write", "No space left on device")


def _small_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    disk = tmp_path / "disk"
    if not _small_tmpfs(disk, "160k"):
        pytest.skip("mounting a small tmpfs needs root and a mount that allows it")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_real_full_disk_is_one_clear_message(runs, photos, full_disk):  # noqa: F811
    big = make_image_folder(full_disk.parent / "big", classes=4, per_class=300, size=24)
    index = subprocess.run([sys.executable, "-m", "hashpa.cli", "index", str(big), "--run-dir", str(runs / "run16"), "--out", str(full_disk / "idx"),
                            "--workers", "0", "--float-index", "Flat", "--float-index", "HNSW32"], capture_output=True, text=True, cwd=ROOT)
    train = subprocess.run([sys.executable, "-m", "hashpa.cli", "train", "--data", str(photos), "--out", str(full_disk / "run"), *TINY],
                           capture_output=True, text=True, cwd=ROOT)
    for done in (index, train):
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert "free" in done.stderr and ("No space left" in done.stderr or "full" in done.stderr or "needs about" in done.stderr), done.stderr
    assert not [p for p in full_disk.rglob("*") if p.is_file() and p.stat().st_size == 0 and p.suffix in (".faiss", ".h5", ".pt")]


# ---- smaller items ------------------------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umasks_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        fileio.write_json_atomic(tmp_path / "a.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode


@pytest.mark.parametrize("name", ["new\nline.png", "esc\x1b[31mred.png", "tab\there.png", "back\\slash.png"])
def test_file_names_cannot_forge_lines_of_output(runs, photos, tmp_path, name):  # noqa: F811
    shutil.copy(query(photos), photos / "class_00" / name)
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()
    out = hashpa("search", tmp_path / "idx", photos / "class_00", "-k", 19).succeeded().stdout
    assert "\x1b" not in out and all(line.startswith(("query ", "  ")) for line in out.splitlines())
    hashpa("export-codes", tmp_path / "idx", tmp_path / "codes.txt").succeeded()
    lines = (tmp_path / "codes.txt").read_text().splitlines()
    assert len(lines) == 19 and all(line.count("\t") == 1 for line in lines)
    escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\x1b", "\\x1b")
    assert f"class_00/{escaped}" in [line.split("\t")[0] for line in lines]


def test_an_interruption_before_anything_is_written_says_so(photos, tmp_path, monkeypatch):  # noqa: F811
    from hashpa.training import trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "__init__", interrupted)
    monkeypatch.setattr(fileio, "_written", [0])
    out = hashpa("train", "--data", photos, "--out", tmp_path / "run", *TINY)
    assert out.code == 130 and "interrupted before anything was written" in out.output and "saved" not in out.output


def test_a_diverging_run_says_the_loss_diverged_and_what_to_change(photos, tmp_path):  # noqa: F811
    out = hashpa("train", "--data", photos, "--out", tmp_path / "run", *TINY, "--lr", "1e30").failed_with("training diverged", "Lower --lr (it is 1e+30)")
    assert "contains NaN" not in out.output


def test_compare_leaves_out_queries_whose_class_has_no_other_image_and_says_how_many(runs, photos, tmp_path):  # noqa: F811
    (photos / "lonely").mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photos / "lonely" / "only.png")
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()
    report = json.loads(hashpa("compare", tmp_path / "idx", "--json", "--repeats", 1, "--latency-queries", 0).succeeded().stdout)
    assert report["labelled_queries"] == 19 and report["judged_queries"] == 18
    assert "1 labelled queries have no other image of their class" in (tmp_path / "idx" / "compare.md").read_text()
    store = read_store(index_file(tmp_path / "idx", "store.h5"))
    similarity = store.embeddings @ store.embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argmax(similarity, axis=1)  # brute force, leave-one-out
    judged = np.array([np.count_nonzero(store.labels == label) > 1 for label in store.labels])
    hits = store.labels[nearest] == store.labels
    flat = next(r for r in report["methods"] if r["method"] == "float Flat")
    assert flat["recall@1"] == pytest.approx(hits[judged].mean()) and hits[judged].mean() != pytest.approx(hits.mean())


def test_json_output_is_strict(runs, indexed):  # noqa: F811
    out = hashpa("info", indexed, "--json").succeeded().stdout
    json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    assert np.isfinite(json.loads(out)["bit_statistics"]["mean_entropy"])
