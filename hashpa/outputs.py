"""The write rule: hashpa creates new files, or replaces files it wrote itself; anything else is
refused with a message naming the file and the option that allows it.

Every folder hashpa writes into holds a manifest of what it wrote there:

    FOLDER/.hashpa.json   {"format": 1, "folder": "run" | "index" | null,
                                    "files": {name: {"bytes": size, "crc32": hex digest}}}

- A run or index directory is claimed whole (``claim_folder``): it must be new, empty or already
  one of hashpa's of that kind, and hashpa manages the files of its own layout inside it.
- A single output (a result grid, exported codes, a compare or eval report) is listed under
  "files" with the checksum it had when written (``write_output``): hashpa replaces it while it is
  unchanged; once somebody edits it, it is theirs and replacing it takes ``--overwrite``.

Folder scans skip claimed folders and listed files (``is_output``), so that nothing hashpa writes
inside an image folder is ever indexed or trained on as an image.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from hashpa.errors import HashpaError
from hashpa.fileio import LOCK_FILE, TEMPORARY_MARK, atomic_path, checksum, write_json_atomic

MANIFEST = ".hashpa.json"
FOLDER_KINDS = {"run": "a hashpa run directory", "index": "a hashpa index directory"}
LEGACY_MARKERS = {"index": ("index.json", "store.h5"), "run": ("config.json", "last.pt")}  # folders hashpa wrote before manifests


def read_manifest(folder: str | Path) -> dict:
    """The manifest of `folder` ({"folder": None, "files": {}} when it has none or it is not hashpa's)."""
    empty = {"format": 1, "folder": None, "files": {}}
    try:
        values = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return empty
    if not isinstance(values, dict) or not isinstance(values.get("files", {}), dict) or values.get("folder") not in (None, *FOLDER_KINDS):
        return empty
    return {**empty, **values}


def folder_kind(folder: str | Path) -> str | None:
    """"run" or "index" when `folder` is one of hashpa's run or index directories, else None."""
    folder = Path(folder)
    kind = read_manifest(folder)["folder"]
    if kind:
        return kind
    for legacy, markers in LEGACY_MARKERS.items():
        if all((folder / name).is_file() for name in markers):
            return legacy
    return "index" if any(folder.glob(".partial-*")) else None


def check_folder(folder: str | Path, kind: str, option: str = "--out") -> None:
    """Refuse `folder` as a `kind` ("run" or "index") directory unless it is new, empty (but for
    hashpa's own temporaries and lock) or already one of hashpa's of that kind. Writes nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HashpaError(f"{option} {folder} is a file, not a folder: choose a folder for {FOLDER_KINDS[kind]}")
    existing = folder_kind(folder) if folder.is_dir() else None
    if existing and existing != kind:
        raise HashpaError(f"{option} {folder} is {FOLDER_KINDS[existing]}, not {FOLDER_KINDS[kind]}: choose another folder")
    if existing is None and folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK_FILE, MANIFEST) and TEMPORARY_MARK not in p.name)
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise HashpaError(f"{option} {folder} holds files hashpa did not write ({shown}) and is not {FOLDER_KINDS[kind]}: "
                              "choose a new or empty folder")


def claim_folder(folder: str | Path, kind: str, option: str = "--out") -> Path:
    """`check_folder`, then create `folder` if need be and mark it as hashpa's `kind` directory."""
    folder = Path(folder)
    check_folder(folder, kind, option)
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        if manifest["folder"] != kind:
            write_json_atomic(folder / MANIFEST, {**manifest, "folder": kind})
    return folder


def check_replaceable(path: str | Path, overwrite: bool = False, option: str = "--overwrite") -> None:
    """Refuse to write `path` when something is there that hashpa did not write (or that changed since
    it did), unless `overwrite`."""
    path = Path(path)
    protected = state_problem(path)
    if protected:
        raise HashpaError(f"{path} {protected}: hashpa never writes an output there, whatever {option} says; choose a file "
                          "outside it (reports may go beside the index or run, at its top level)")
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        raise HashpaError(f"{path} is a folder: give a file name")
    if overwrite or is_ours(path):
        return
    raise HashpaError(f"{path} already exists and hashpa did not write it (or it changed since): pass {option} to replace it, "
                      "or choose another file name")


def write_output(path: str | Path, write: Callable[[Path], None], overwrite: bool = False, option: str = "--overwrite") -> Path:
    """Write one output file under the write rule: `write(tmp)` fills a temporary file that is renamed
    onto `path` (atomically), and `path` is listed in its folder's manifest as hashpa's."""
    path = Path(path)
    check_replaceable(path, overwrite, option)
    with atomic_path(path) as tmp:
        write(tmp)
    record_written(path)
    return path


def record_written(path: str | Path) -> None:
    """List the file hashpa just wrote at `path` in its folder's manifest, with its checksum (``is_ours``)."""
    path = Path(path)
    with _manifest_lock(path.parent):
        manifest = read_manifest(path.parent)
        manifest["files"][path.name] = checksum(path)
        write_json_atomic(path.parent / MANIFEST, manifest)


# The names of a run or index directory's own state at its top level (generation folders and partial
# results too): no output replaces them, and nothing is written inside a folder of them.
STATE_NAMES = {"run": {"config.json", "history.jsonl", "last.pt", "best.pt"}, "index": {"index.json", "store.h5"}}
STATE_PATTERNS = {"run": (), "index": ("gen-*", ".partial-*", "*.faiss")}


def state_problem(path: str | Path) -> str | None:
    """Why writing `path` would touch a hashpa run or index directory's own state (one of its files,
    or anything inside its generation folders or partial results), or None. Links are resolved first."""
    target = Path(path).parent.resolve() / Path(path).name
    for folder in target.parents:
        kind = folder_kind(folder) if folder.is_dir() else None
        if kind is None:
            continue
        inside = target.relative_to(folder).parts
        top = inside[0]
        if top in STATE_NAMES[kind] | {MANIFEST, LOCK_FILE} or any(Path(top).match(pattern) for pattern in STATE_PATTERNS[kind]):
            return f"is {'inside ' if len(inside) > 1 else ''}the state of {FOLDER_KINDS[kind]} ({folder})"
    return None


def is_ours(path: str | Path) -> bool:
    """Whether `path` is a file hashpa wrote as an output and nobody changed since."""
    path = Path(path)
    recorded = read_manifest(path.parent)["files"].get(path.name)
    if not isinstance(recorded, dict) or path.is_symlink() or not path.is_file():
        return False
    return path.stat().st_size == recorded.get("bytes") and checksum(path) == recorded


def is_output(folder: str | Path, names: list[str]) -> tuple[bool, set[str]]:
    """(whether `folder` is a run or index directory, which of `names` in it are hashpa's outputs):
    what a scan for images leaves out. `names` are the folder's file names, as a walk lists them."""
    if MANIFEST not in names and not set(LEGACY_MARKERS["index"]) <= set(names):
        return False, set()
    if folder_kind(folder):
        return True, set(names)
    return False, set(read_manifest(folder)["files"])


@contextlib.contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    """One manifest update at a time in `folder` (a lock on the folder itself: no file of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
