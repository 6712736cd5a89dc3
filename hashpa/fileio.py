"""Files hashpa writes: atomically (a crash never leaves a half-written file under the final name),
with their temporaries recognisable and cleaned up, checksummed, and behind a lock per folder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator

from hashpa.errors import HashpaError

TEMPORARY_MARK = ".hashpa-"  # in the name of every temporary file hashpa writes: .<name>.hashpa-<random>.tmp
LOCK_FILE = ".hashpa.lock"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMPORARY_MARK}", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted hashpa left in `folder` (only hashpa's own); returns them."""
    leftovers = sorted(Path(folder).glob(f".*{TEMPORARY_MARK}*.tmp"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def checksum(path: str | Path) -> dict:
    """{"bytes": size, "crc32": hex digest} of a file, read in 16 MiB blocks."""
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(16 * 2**20):
            crc, size = zlib.crc32(block, crc), size + len(block)
    return {"bytes": size, "crc32": f"{crc:08x}"}


def verify(path: Path, recorded: dict, fix: str) -> None:
    """Raise a HashpaError (saying `fix`) when `path` no longer has the size and checksum recorded for it."""
    if not path.is_file():
        raise HashpaError(f"{path} is missing; {fix}")
    if path.stat().st_size != recorded["bytes"] or checksum(path) != recorded:
        raise HashpaError(f"{path} does not match the checksum recorded when it was written (damaged or changed); {fix}")


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold `folder`'s lock while one writer works in it; a second writer stops with a clear message."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise HashpaError(f"{folder} is being written by {holder}: wait for it to finish, or use another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (process {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
