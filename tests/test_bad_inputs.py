"""A corpus of hostile inputs against every command: each ends in a clear error with a non-zero exit,
a skip that is counted and reported, or a correct result; never a traceback, never a changed or
removed file the user made."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from hashpa.cli.main import cli
from hashpa.data.decode import decode_image
from hashpa.fileio import LOCK_FILE, folder_lock
from hashpa.indexdir import read_store
from tests.conftest import index_file, make_image_folder

TINY = ["--backbone", "smallcnn", "--weights", "none", "--dim", "16", "--bits", "16", "--split", "seen", "--epochs", "2",
        "--batch-size", "16", "--lr", "0.003", "--workers", "0", "--warmup-epochs", "0"]


def hashpa(*args) -> "Outcome":
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return Outcome(result)


class Outcome:
    def __init__(self, result):
        self.code, self.output, self.stdout = result.exit_code, result.output, result.stdout
        self.exception = result.exception
        assert self.exception is None or isinstance(self.exception, SystemExit), f"a traceback: {self.exception!r}\n{self.output}"
        assert "Traceback" not in self.output

    def failed_with(self, *needles: str) -> "Outcome":
        assert self.code != 0, self.output
        for needle in needles:
            assert needle in self.output, f"{needle!r} not in: {self.output}"
        return self

    def succeeded(self) -> "Outcome":
        assert self.code == 0, self.output
        return self


def fingerprint_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (the user's files, to check that nothing changed)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny compressed block of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    folder = make_image_folder(base / "train-images", classes=4, per_class=12)
    for name, bits in (("run16", "16"), ("run32", "32")):
        hashpa("train", "--data", folder, "--out", base / name, *TINY, "--bits", bits, "--dim", bits).succeeded()  # the last value counts
    return base


@pytest.fixture
def photos(tmp_path) -> Path:
    return make_image_folder(tmp_path / "photos", classes=3, per_class=6, size=40)


# ---- images: each hostile file is skipped and counted, the rest is indexed --------------------------

def _hostile_images() -> dict[str, bytes | None]:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    full = jpeg_bytes(picture)
    png = io.BytesIO()
    picture.save(png, format="PNG")
    return {
        "empty.jpg": b"",
        "truncated.jpg": full[: len(full) // 3],
        "truncated.png": png.getvalue()[:200],
        "text.png": b"this is not an image\n",
        "bomb.png": png_header(100_000, 100_000),
        "bomb-small.png": png_header(20_000, 20_000),
        "random-bytes.webp": rng.integers(0, 255, 5000, dtype=np.uint8).tobytes(),
        "html.gif": b"<html><body>404</body></html>",
    }


@pytest.mark.parametrize("decode", ["pil", "device"])
@pytest.mark.parametrize("name", list(_hostile_images()))
def test_a_hostile_image_is_skipped_and_counted(runs, photos, tmp_path, name, decode):
    (photos / "class_00" / name).write_bytes(_hostile_images()[name])
    before = fingerprint_tree(photos)
    out = hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0, "--decode", decode, "--json").succeeded()
    summary = json.loads(out.stdout)
    assert summary["rows"] == 18 and summary["skipped"] == [f"class_00/{name}"]
    assert fingerprint_tree(photos) == before


def test_a_batch_of_only_unreadable_images_does_not_stop_the_index(runs, photos, tmp_path):
    (photos / "class_01" / "broken.png").write_bytes(b"broken")
    for attempt in range(2):  # and the rerun too
        summary = json.loads(hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0,
                                    "--batch-size", 1, "--json").succeeded().stdout)
        assert summary["rows"] == 18 and summary["skipped"] == ["class_01/broken.png"]


def test_a_folder_of_only_unreadable_images_is_a_clear_error(runs, tmp_path):
    (tmp_path / "bad" / "a").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "bad" / "a" / f"{i}.jpg").write_bytes(b"nope")
    hashpa("index", tmp_path / "bad", "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).failed_with("none of the 3 images")


def test_links_to_nothing_and_names_that_are_not_utf8_are_counted(runs, photos, tmp_path):
    os.symlink(tmp_path / "nowhere.png", photos / "class_00" / "dangling.png")
    strange = os.fsencode(photos / "class_01") + b"/caf\xe9.png"  # Latin-1, not UTF-8
    with open(strange, "wb") as handle:
        handle.write((photos / "class_01" / "img_000.png").read_bytes())
    for attempt in range(2):  # the first build and an update
        summary = json.loads(hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0, "--json").succeeded().stdout)
        assert summary["rows"] == 18 and sorted(summary["skipped"]) == ["class_00/dangling.png", "class_01/caf\\xe9.png"]


# ---- images decoded as they are shown -----------------------------------------------------------------

def test_exif_orientation_is_applied_on_every_path(tmp_path):
    y, x = np.mgrid[0:30, 0:50]
    upright = np.stack([x * 5, y * 8, np.full_like(x, 128)], axis=-1).astype(np.uint8)  # smooth, and no two corners alike
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as a camera stores a photo turned a quarter
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show"
    data = jpeg_bytes(stored, exif=exif)
    shown = np.asarray(decode_image(data)).astype(int)
    assert shown.shape == upright.shape and np.abs(shown - upright).mean() < 8  # JPEG loss only
    from hashpa.data.device_decode import decode_batch

    images, kept = decode_batch([torch.frombuffer(bytearray(data), dtype=torch.uint8)], [Path("x.jpg")], torch.device("cpu"))
    assert kept == [0] and np.array_equal(images[0].permute(1, 2, 0).numpy(), np.asarray(decode_image(data)))


def test_sixteen_bit_and_float_pixels_keep_their_range():
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    for array in ((ramp * 65535).astype(np.uint16), ramp.astype(np.float32)):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG" if array.dtype == np.uint16 else "TIFF")
        grey = np.asarray(decode_image(buffer.getvalue()))[..., 0].astype(int)
        assert np.abs(grey - np.rint(ramp * 255)).max() <= 1  # not white, not four grey levels
        assert len(np.unique(grey)) > 200


@pytest.mark.parametrize("mode", ["CMYK", "P", "LA", "1", "L", "RGBA"])
def test_other_pixel_formats_decode_to_rgb(mode, tmp_path):
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 255, (20, 20, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    picture.save(path)
    assert decode_image(path).mode == "RGB" and decode_image(path).size == (20, 20)


def test_an_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((250, 0, 0), (0, 250, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert np.asarray(decode_image(tmp_path / "a.gif"))[0, 0, 0] > 200


def test_tiny_and_very_long_images_are_indexed(runs, photos, tmp_path):
    Image.new("RGB", (1, 1), (9, 9, 9)).save(photos / "class_00" / "one-pixel.png")
    Image.new("RGB", (2000, 1), (90, 9, 9)).save(photos / "class_00" / "a-line.png")
    summary = json.loads(hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0, "--json").succeeded().stdout)
    assert summary["rows"] == 20 and summary["skipped"] == []


# ---- folders and options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needles", [
    (["index", "{missing}", "--run-dir", "{run16}", "--out", "{tmp}/idx"], ["does not exist"]),
    (["index", "{empty}", "--run-dir", "{run16}", "--out", "{tmp}/idx"], ["no images found"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{photos}/class_00/img_000.png"], ["is a file"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--workers", "-1"], ["--workers"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--batch-size", "0"], ["--batch-size"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--code-bits", "0", "--codes", "itq"], ["--code-bits must be"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--code-bits", "24", "--codes", "itq"],
     ["from 16 to 16 (the embedding dimension 16)"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--code-bits", "16"], ["use it with --codes itq"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--float-index", "Flat,Nonsense"], ["not a FAISS float factory string"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--binary-index", "BIVF1024"], ["needs at least 1024 vectors"]),
    (["index", "{photos}", "--run-dir", "{run16}", "--out", "{tmp}/idx", "--float-index", "PQ4np"], ["needs at least 256 vectors", "PQ8x4np"]),
    (["index", "{photos}", "--run-dir", "{tmp}", "--out", "{tmp}/idx"], ["no checkpoint in"]),
    (["train", "--bits", "63"], ["multiple of 8"]),
    (["train", "--bits", "512"], ["from 16 to 256"]),
    (["train", "--data", "{missing}"], ["image folder not found"]),
    (["train", "--dataset", "cub"], ["needs --root"]),
    (["train", "--data", "{photos}", "--epochs", "-2"], ["--epochs must be"]),
    (["train", "--data", "{photos}", "--test-fraction", "1.5", "--split", "seen"], ["--test-fraction"]),
    (["train", "--resume", "{tmp}"], ["not a hashpa run directory"]),
    (["eval", "{tmp}"], ["not a hashpa run directory"]),
])
def test_bad_options_and_folders_are_clear_errors(runs, photos, tmp_path, args, needles):
    (tmp_path / "empty").mkdir()
    values = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "photos": photos, "run16": runs / "run16", "tmp": tmp_path}
    before = fingerprint_tree(photos)
    hashpa(*[a.format(**values) for a in args]).failed_with(*needles)
    assert fingerprint_tree(photos) == before and not (tmp_path / "idx" / "index.json").exists()


def test_an_out_folder_holding_the_users_files_is_refused_and_left_alone(runs, photos, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "mine" / "vectors.faiss").write_bytes(b"my own index")
    before = fingerprint_tree(tmp_path / "mine")
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "mine", "--workers", 0).failed_with("is not a hashpa index")
    assert fingerprint_tree(tmp_path / "mine") == before


def test_an_update_never_deletes_a_faiss_file_it_did_not_write(runs, photos, tmp_path):
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0, "--binary-index", "BHNSW32").succeeded()
    (tmp_path / "idx" / "mine.faiss").write_bytes(b"the user's")
    hashpa("index", photos, "--model", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()  # --run-dir's other name
    assert (tmp_path / "idx" / "mine.faiss").read_bytes() == b"the user's"
    assert not list((tmp_path / "idx").rglob("binary-BHNSW32.faiss"))  # hashpa's own index of the earlier build is gone


def test_a_typo_in_an_update_leaves_the_index_searchable(runs, photos, tmp_path):
    idx = tmp_path / "idx"
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", idx, "--workers", 0).succeeded()
    before = fingerprint_tree(idx)
    make_image_folder(photos, classes=3, per_class=8, size=40, seed=4)  # new and changed images
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", idx, "--workers", 0, "--float-index", "HSNW32").failed_with("HSNW32")
    assert fingerprint_tree(idx) == before
    hashpa("search", idx, photos / "class_00" / "img_000.png", "-k", 2).succeeded()


def test_another_models_index_is_replaced_only_when_asked(runs, photos, tmp_path):
    idx = tmp_path / "idx"
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", idx, "--workers", 0).succeeded()
    before = fingerprint_tree(idx)
    hashpa("index", photos, "--run-dir", runs / "run32", "--out", idx, "--workers", 0).failed_with("built by another model", "--replace")
    assert fingerprint_tree(idx) == before
    summary = json.loads(hashpa("index", photos, "--run-dir", runs / "run32", "--out", idx, "--workers", 0, "--replace", "--json").succeeded().stdout)
    assert summary["embedded"] == 18 and read_store(index_file(idx, "store.h5")).bits == 32


def test_a_second_writer_of_one_index_stops_with_a_message(runs, photos, tmp_path):
    with folder_lock(tmp_path / "idx", "hashpa index"):
        hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).failed_with("is being written by hashpa index")
    with folder_lock(runs / "run16", "hashpa train"):
        hashpa("train", "--resume", runs / "run16").failed_with("is being written by hashpa train")


# ---- damaged files ------------------------------------------------------------------------------------

@pytest.fixture
def built(runs, photos, tmp_path) -> Path:
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()
    return tmp_path / "idx"


def flip_a_byte(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped store", "flipped faiss", "truncated faiss", "garbage store"])
def test_damaged_index_files_are_errors_that_the_same_index_command_repairs(runs, photos, built, damage):
    query = photos / "class_02" / "img_001.png"
    expected = json.loads(hashpa("search", built, query, "-k", 3, "--json").succeeded().stdout)
    if damage == "flipped store":
        flip_a_byte(index_file(built, "store.h5"), 0.9)
    elif damage == "flipped faiss":
        flip_a_byte(index_file(built, "float-Flat.faiss"))
    elif damage == "truncated faiss":
        (index_file(built, "float-Flat.faiss")).write_bytes((index_file(built, "float-Flat.faiss")).read_bytes()[:100])
    else:
        (index_file(built, "store.h5")).write_bytes(b"not hdf5 at all" * 100)
    hashpa("search", built, query, "-k", 3).failed_with("run the hashpa index command that built")
    hashpa("index", photos, "--run-dir", runs / "run16", "--out", built, "--workers", 0).succeeded()
    assert json.loads(hashpa("search", built, query, "-k", 3, "--json").succeeded().stdout) == expected


@pytest.mark.parametrize("edit", ["truncated", "rows", "bits", "wrong type", "not an object", "bad entry"])
def test_a_damaged_or_edited_index_json_is_an_error(built, photos, edit):
    path = built / "index.json"
    meta = json.loads(path.read_text())
    if edit == "truncated":
        path.write_text(path.read_text()[:40])
    elif edit == "not an object":
        path.write_text("[1, 2, 3]")
    else:
        meta |= {"rows": 7} if edit == "rows" else {"bits": 64} if edit == "bits" else {"rows": "many"} if edit == "wrong type" else {
            "indexes": {"float:Flat": {"kind": "float"}}}
        path.write_text(json.dumps(meta))
    hashpa("search", built, photos / "class_00" / "img_000.png").failed_with("index.json")
    hashpa("info", built).failed_with("index.json")


# ---- search and compare -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needles", [
    (["-k", "0"], ["-k"]), (["-k", "1000"], ["-k must be between 1 and the index size 18"]),
    (["--nprobe", "-1"], ["--nprobe"]), (["--ef-search", "0"], ["--ef-search"]),
    (["--mode", "asymmetric"], ["--codes itq"]), (["--index", "HNSW32"], ["has no float index 'HNSW32'"]),
    (["--shortlist", "0", "--mode", "rerank"], ["--shortlist must be at least 1"]), (["--mode", "cosine"], ["--mode"]),
])
def test_bad_search_requests_are_clear_errors(built, photos, args, needles):
    hashpa("search", built, photos / "class_00" / "img_000.png", *args).failed_with(*needles)


def test_an_unreadable_query_image_is_an_error(built, tmp_path):
    (tmp_path / "query.jpg").write_bytes(b"\xff\xd8 broken")
    hashpa("search", built, tmp_path / "query.jpg").failed_with("cannot read the query image")


def test_compare_refuses_settings_that_would_overwrite_its_report_with_nothing(built):
    hashpa("compare", built, "--latency-queries", 2, "--repeats", 1).succeeded()
    before = (built / "compare.json").read_bytes()
    hashpa("compare", built, "--repeats", 0).failed_with("--repeats")
    assert (built / "compare.json").read_bytes() == before
    report = json.loads(hashpa("compare", built, "--latency-queries", 0, "--repeats", 1, "--json").succeeded().stdout)
    assert all(m["latency_p50_ms"] is None and m["queries_per_second"] > 0 for m in report["methods"])


def test_compare_on_an_unlabelled_index_and_on_a_tiny_one(runs, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted(make_image_folder(tmp_path / "src", classes=2, per_class=3).rglob("*.png"))):
        path.rename(flat / f"{i}.png")  # no class folders: no labels
    hashpa("index", flat, "--run-dir", runs / "run16", "--out", tmp_path / "idx", "--workers", 0).succeeded()
    report = json.loads(hashpa("compare", tmp_path / "idx", "--latency-queries", 1, "--repeats", 1, "--json").succeeded().stdout)
    assert report["labelled_queries"] == 0 and report["speed_k"] == 6 and "recall@1" not in report["methods"][0]


# ---- runs and checkpoints ----------------------------------------------------------------------------------

def test_train_never_overwrites_a_best_pt_it_cannot_resume(runs, photos, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes((runs / "run16" / "best.pt").read_bytes())
    before = fingerprint_tree(tmp_path / "run")
    hashpa("train", "--data", photos, "--out", tmp_path / "run", *TINY).failed_with("holds files hashpa did not write (best.pt)")
    assert fingerprint_tree(tmp_path / "run") == before


@pytest.mark.parametrize("value,needle", [('"3"', "epochs (--epochs) must be int"), ("2.5", "epochs (--epochs) must be int"),
                                          ("null", "epochs (--epochs) must be int")])
def test_a_config_json_with_values_of_the_wrong_type_is_an_error(runs, tmp_path, value, needle):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "best.pt", "history.jsonl"):
        (run / name).write_bytes((runs / "run16" / name).read_bytes())
    config = (runs / "run16" / "config.json").read_text()
    (run / "config.json").write_text(config.replace('"epochs": 2', f'"epochs": {value}'))
    hashpa("train", "--resume", run).failed_with(needle)
    hashpa("eval", run).failed_with(needle)


@pytest.mark.parametrize("content", [b"", b"garbage" * 50, pickle.dumps({"format": 1})])
def test_an_unreadable_checkpoint_is_a_clear_error_that_never_advises_unsafe_loading(runs, photos, tmp_path, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((runs / "run16" / "config.json").read_text())
    (run / "last.pt").write_bytes(content)
    out = hashpa("index", photos, "--run-dir", run, "--out", tmp_path / "idx", "--workers", 0).failed_with("cannot read checkpoint")
    assert "weights_only=False" not in out.output and "Errno" not in out.output


def test_a_pickle_given_as_weights_is_refused_without_running(photos, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload()))
    hashpa("train", "--data", photos, "--out", tmp_path / "run", *TINY, "--weights", tmp_path / "evil.pt").failed_with("never arbitrary pickles")
    assert not marker.exists()


def test_a_stale_or_missing_best_pt_is_never_used_and_resume_repairs_it(runs, photos, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "run16", run)
    last = torch.load(run / "last.pt", weights_only=True)
    stage = "codes" if last["codes_fitted_at"] == last["epoch"] else None
    last["best"] = {k: v for k, v in last["best"].items() if k != "stage"} | {"epoch": last["epoch"], **({"stage": stage} if stage else {})}
    torch.save(last, run / "last.pt")  # last.pt records that its own model is the best ...
    older = torch.load(run / "best.pt", weights_only=True) | {"epoch": last["epoch"] - 1, "codes_fitted_at": None}
    torch.save(older, run / "best.pt")  # ... but the kill came while best.pt was written: it still holds an older epoch
    out = hashpa("index", photos, "--run-dir", run, "--out", tmp_path / "idx", "--workers", 0).succeeded()
    assert "best.pt is stale" in out.output and json.loads((tmp_path / "idx" / "index.json").read_text())["checkpoint"] == "last"
    moved = run / "elsewhere.pt"
    (run / "best.pt").rename(moved)
    out = hashpa("index", photos, "--run-dir", run, "--out", tmp_path / "idx2", "--workers", 0).succeeded()
    assert "best.pt is missing" in out.output
    moved.rename(run / "best.pt")
    hashpa("train", "--resume", run).succeeded()
    repaired = torch.load(run / "best.pt", weights_only=True)
    assert repaired["epoch"] == last["epoch"] and "optimizer" not in repaired
    assert all(torch.equal(repaired["model"][k], last["model"][k]) for k in last["model"])
