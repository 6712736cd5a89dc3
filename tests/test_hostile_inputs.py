"""Hostile inputs, second corpus: the same picture given every way (a path, a PIL image, an array, a
tensor) embeds identically; only regular files are read; unreadable folders and replaced files are
never mistaken; environment faults and impossible settings end in a clear error, never a traceback.
(With tests/test_hostile_state.py; see there.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hashpa
from hashpa.data.decode import ImageError, decode_image
from hashpa.errors import HashpaError
from tests.test_bad_inputs import TINY, photos, runs  # noqa: F401  (fixtures)
from tests.test_bad_inputs import hashpa as run_cli


def _picture(size=(48, 36)) -> Image.Image:
    """A picture that is not symmetric under any flip or turn (so an orientation mistake shows)."""
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    return Image.fromarray(np.stack([x * 255 // size[0], y * 255 // size[1], (x * y) % 255], axis=-1).astype(np.uint8))


def _exif_jpeg(path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    _picture().save(path, format="JPEG", quality=95, exif=exif)


def _sixteen_bit(path: Path) -> None:
    y, x = np.mgrid[0:36, 0:48]
    Image.fromarray((x * 1300 + y * 50).astype(np.uint16)).save(path)  # mode I;16, values well above 255


PICTURES = {
    "exif-rotated-180.jpg": lambda p: _exif_jpeg(p, 3),
    "exif-rotated-90.jpg": lambda p: _exif_jpeg(p, 6),
    "exif-rotated-270.jpg": lambda p: _exif_jpeg(p, 8),
    "exif-mirrored.jpg": lambda p: _exif_jpeg(p, 2),
    "sixteen-bit.png": _sixteen_bit,
    "thirty-two-bit.tif": lambda p: Image.fromarray((np.arange(48 * 36).reshape(36, 48) * 37).astype(np.int32)).save(p),
    "palette.png": lambda p: _picture().convert("P", palette=Image.ADAPTIVE, colors=16).save(p),
    "palette-transparent.png": lambda p: _picture().convert("P", palette=Image.ADAPTIVE, colors=16).save(p, transparency=3),
    "one-bit.png": lambda p: _picture().convert("1").save(p),
    "grey-alpha.png": lambda p: _picture().convert("LA").save(p),
    "rgba.png": lambda p: _picture().convert("RGBA").save(p),
    "cmyk.jpg": lambda p: _picture().convert("CMYK").save(p, quality=95),
    "grey.jpg": lambda p: _picture().convert("L").save(p, quality=95),
    "float.tif": lambda p: Image.fromarray(np.asarray(_picture().convert("L"), dtype=np.float32) / 255).save(p),
}


@pytest.fixture(scope="module")
def model(runs):  # noqa: F811
    return hashpa.load(runs / "run16", device="cpu")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    for name, write in PICTURES.items():
        write(folder / name)
    return folder


@pytest.mark.parametrize("name", list(PICTURES))
@pytest.mark.parametrize("given", ["a PIL image", "an array", "a tensor"])
def test_the_same_picture_embeds_identically_however_it_is_given(model, pictures, name, given):
    path = pictures / name
    from_path = model.embed(path)
    if given == "a PIL image":
        other = model.embed(Image.open(path))
    elif given == "an array":
        other = model.embed(np.asarray(decode_image(path)))
    else:
        other = model.embed(torch.from_numpy(np.asarray(decode_image(path)).copy()).permute(2, 0, 1))
    assert np.array_equal(from_path[0], other[0]) and np.array_equal(from_path[1], other[1])


def test_an_exif_rotated_photo_is_upright_and_a_sixteen_bit_one_keeps_its_range(pictures):
    rotated = decode_image(pictures / "exif-rotated-90.jpg")
    assert rotated.size == (36, 48)  # turned: height and width swapped
    sixteen = np.asarray(decode_image(pictures / "sixteen-bit.png"))
    assert sixteen.min() < 20 and 200 < sixteen.max() < 256 and len(np.unique(sixteen)) > 100  # not clipped to white


def test_a_truncated_picture_given_as_a_pil_image_is_a_clear_error(model, pictures, tmp_path):
    data = (pictures / "grey.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(HashpaError, match="cannot read the pixels"):
        model.embed(Image.open(tmp_path / "cut.jpg"))


# ---- only regular files are read ------------------------------------------------------------------

def test_a_fifo_is_never_opened_as_an_image(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        decode_image(tmp_path / "pipe.jpg")  # a blocking open would hang here


def test_a_folder_named_like_an_image_is_not_read(tmp_path):
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageError, match="not a regular file"):
        decode_image(tmp_path / "folder.png")


@pytest.mark.parametrize("special", ["fifo", "device link"])
def test_indexing_skips_and_counts_fifos_and_devices(runs, photos, tmp_path, special):  # noqa: F811
    target = photos / "class_00" / "special.jpg"
    os.mkfifo(target) if special == "fifo" else os.symlink("/dev/zero", target)
    summary = json.loads(run_cli("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0, "--json").succeeded().stdout)
    assert summary["rows"] == 18 and summary["skipped"] == ["class_00/special.jpg"]


def test_a_fifo_as_a_query_is_a_clear_error(runs, photos, tmp_path):  # noqa: F811
    run_cli("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()
    os.mkfifo(tmp_path / "query.png")
    run_cli("search", tmp_path / "idx", tmp_path / "query.png").failed_with("query.png", "neither an image file nor a folder")


@pytest.mark.parametrize("change", ["deleted", "a fifo now"])
def test_a_grid_whose_hit_changed_since_indexing_still_draws(runs, photos, tmp_path, change):  # noqa: F811
    run_cli("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()
    query = photos / "class_01" / "img_001.png"
    hit = photos / "class_01" / "img_000.png"
    hit.unlink()
    if change == "a fifo now":
        os.mkfifo(hit)
    run_cli("search", tmp_path / "idx", query, "--grid", tmp_path / "grid.png", "-k", 18).succeeded()
    assert Image.open(tmp_path / "grid.png").size[0] > 100


# ---- what changed, and what could not be read -----------------------------------------------------

def _index(runs, photos, out) -> dict:  # noqa: F811
    return json.loads(run_cli("index", photos, "--run-dir", runs / "run16", "--out", out, "--workers", 0, "--json").succeeded().stdout)


@pytest.mark.parametrize("copy", ["cp -p", "mtime set back"])
def test_a_file_replaced_with_the_same_size_and_mtime_is_embedded_again(runs, photos, tmp_path, copy):  # noqa: F811
    out = tmp_path / "idx"
    _index(runs, photos, out)
    target, other = photos / "class_00" / "img_000.png", photos / "class_02" / "img_000.png"
    stat = target.stat()
    replacement = tmp_path / "replacement.png"
    Image.open(other).save(replacement)
    if replacement.stat().st_size != stat.st_size:  # same size as the original: pad a copy of the other picture's bytes
        data = replacement.read_bytes()
        replacement.write_bytes((data + b"\0" * stat.st_size)[: stat.st_size] if len(data) < stat.st_size else data)
    if copy == "cp -p":
        os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        shutil.copy2(replacement, target)
    else:
        target.write_bytes(replacement.read_bytes())
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_mtime_ns == stat.st_mtime_ns
    summary = _index(runs, photos, out)
    assert summary["embedded"] >= 1


def test_rows_of_a_folder_that_cannot_be_read_are_kept_and_counted(runs, photos, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "idx"
    _index(runs, photos, out)
    locked = str(photos / "class_02")
    real_scandir = os.scandir

    def refusing(path="."):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    summary = _index(runs, photos, out)
    assert summary["rows"] == 18 and summary["removed"] == 0 and "class_02/" in summary["skipped"]


def test_compare_with_the_indexed_folder_as_queries_leaves_each_query_out(runs, photos, tmp_path):  # noqa: F811
    out = tmp_path / "idx"
    _index(runs, photos, out)
    leave_one_out = json.loads(run_cli("compare", out, "--json", "--latency-queries", 0, "--repeats", 1).succeeded().stdout)
    as_queries = json.loads(run_cli("compare", out, "--queries", photos, "--json", "--latency-queries", 0, "--repeats", 1).succeeded().stdout)
    for a, b in zip(leave_one_out["methods"], as_queries["methods"]):
        assert a["recall@1"] == pytest.approx(b["recall@1"]) and a["map@r"] == pytest.approx(b["map@r"])


# ---- environment faults and impossible settings ---------------------------------------------------

def test_hashpa_cache_pointing_at_a_file_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("not a folder\n")
    monkeypatch.setenv("HASHPA_CACHE", str(tmp_path / "cache"))
    run_cli("builtin-path").failed_with("HASHPA_CACHE", "is not a folder")


def test_a_latin1_labels_file_is_a_clear_error(photos, tmp_path):  # noqa: F811
    labels = tmp_path / "labels.csv"
    labels.write_bytes("path,label\nclass_00/img_000.png,caf\xe9\n".encode("latin-1"))
    run_cli("train", "--data", photos, "--labels", labels, "--out", tmp_path / "run", *TINY).failed_with("labels.csv", "not UTF-8")


def test_more_proxies_than_memory_holds_are_refused_before_allocating(photos, tmp_path):  # noqa: F811
    run_cli("train", "--data", photos, "--out", tmp_path / "run", *TINY, "--proxies-per-class", 10_000_000_000).failed_with(
        "GiB", "--proxies-per-class")
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("errno_name", ["EROFS", "EACCES", "EMFILE"])
def test_an_environment_fault_while_writing_is_a_clear_error(runs, photos, tmp_path, monkeypatch, errno_name):  # noqa: F811
    import errno

    from hashpa import fileio

    def refusing(*args, **kwargs):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)), str(tmp_path / "idx"))

    monkeypatch.setattr(fileio, "folder_lock", refusing)
    import hashpa.indexdir.build as build

    monkeypatch.setattr(build, "folder_lock", refusing)
    run_cli("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).failed_with(os.strerror(getattr(errno, errno_name)))


def test_the_file_size_limit_during_an_update_is_a_clear_error_and_keeps_the_index(runs, photos, tmp_path):  # noqa: F811
    out = tmp_path / "idx"
    _index(runs, photos, out)
    before = (out / "index.json").read_bytes()
    store_bytes = (out / json.loads(before)["store"]).stat().st_size  # the new store, with more rows, is larger
    for i in range(30):  # enough new rows that the new store is larger than the limit
        Image.open(photos / "class_00" / "img_000.png").rotate(i).save(photos / "class_00" / f"new_{i:02d}.png")

    # the limit is set by a small launcher, not by preexec_fn: a fork of this test process, which may hold other libraries'
    # threads (gRPC's, from the Milvus tests), can abort before it reaches exec
    launcher = f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({store_bytes}, {store_bytes})); os.execv(sys.executable, sys.argv[1:])"
    command = [sys.executable, "-c", launcher, sys.executable, "-m", "hashpa.cli", "index", str(photos), "--run-dir", str(runs / "run16"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "ulimit -f" in done.stderr
    assert (out / "index.json").read_bytes() == before
    run_cli("search", out, photos / "class_00" / "img_000.png").succeeded()
