"""Files hashpa writes: atomically (a crash never leaves a half-written file under the final name),
with their temporaries recognisable and cleaned up, checksummed, and behind a lock per folder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator

from hashpa.errors import HashpaError

TEMPORARY_MARK = ".hashpa-"  # in the name of every temporary file hashpa writes: .<name>.hashpa-<random>.tmp
LOCK_FILE = ".hashpa.lock"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success flush it to disk and rename it onto `path`,
    else delete it. A failed write (a full disk, a quota, an I/O error) raises a HashpaError that
    says so and leaves whatever was at `path` as it was. The file gets the permissions the umask
    gives new files."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMPORARY_MARK}", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise write_failure(path, error) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, NEW_FILE_MODE & ~current_umask())
        os.replace(tmp_path, path)
        _written[0] += 1
    except (OSError, RuntimeError) as error:  # RuntimeError: torch, FAISS and HDF5 report failed writes so
        raise write_failure(path, error) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_written = [0]  # files this process has written through atomic_path


def files_written() -> int:
    """How many files this process has written (so far) through atomic_path."""
    return _written[0]


NEW_FILE_MODE = 0o666
_umask_lock = threading.Lock()


def current_umask() -> int:
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_failure(path: Path, error: BaseException) -> HashpaError:
    """The HashpaError for a failed write of `path`: what failed, the free space left, what to do."""
    if isinstance(error, HashpaError):
        return error
    free = free_bytes(path.parent)
    full = (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or (free is not None and free < 2**20)
    if isinstance(error, OSError) and error.errno:
        reason = os.strerror(error.errno)
    else:  # a library's words for a short write, which seldom say why
        reason = "the file system is full" if full else (str(error).strip().splitlines() or ["unknown error"])[-1][:200]
    space = "" if free is None else f"; {size_text(free)} free there"
    too_large = (isinstance(error, OSError) and error.errno == errno.EFBIG) or "File too large" in str(error)
    advice = ("free some space (or write elsewhere)" if full else "raise the file size limit (ulimit -f) or write elsewhere" if too_large
              else "check the disk and the folder's permissions")
    return HashpaError(f"cannot write {path} ({reason}{space}): {advice} and run the same command again; "
                       "the file it would have replaced is unchanged")


def free_bytes(folder: Path) -> int | None:
    """Bytes free for this user on the file system holding `folder` (its nearest existing parent), or None."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def check_free_space(folder: Path, needed: int, what: str, largest: int = 0) -> None:
    """Refuse, before writing anything, a write of about `needed` bytes that the file system cannot hold,
    or whose largest file, about `largest` bytes, is more than the file size limit (ulimit -f) allows."""
    import resource

    free = free_bytes(folder)
    if free is not None and free < needed:
        raise HashpaError(f"{what} needs about {size_text(needed)} in {folder}, which has {size_text(free)} free: "
                          "free some space (or write elsewhere) and run the same command again")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and largest > limit:
        raise HashpaError(f"{what} writes a file of about {size_text(largest)}, more than the file size limit of {size_text(limit)} "
                          "(ulimit -f): raise the limit and run the same command again")


def size_text(n: float) -> str:
    """Bytes as B / KiB / MiB / GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted hashpa left in `folder` (only hashpa's own); returns them."""
    from hashpa.owned import remove_owned

    leftovers = sorted(Path(folder).glob(f".*{TEMPORARY_MARK}*.tmp"))
    for path in leftovers:
        remove_owned(folder, path.name)
    return leftovers


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        write_json(tmp, obj)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as strict JSON (a NaN or an infinity becomes null: JSON has neither)."""
    Path(path).write_text(json.dumps(finite(obj), indent=2, sort_keys=False, default=json_default, allow_nan=False) + "\n", encoding="utf-8")


def finite(value: Any) -> Any:
    """`value` with every NaN and infinity inside it (dicts, lists, numpy values) replaced by None."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy / torch arrays and scalars
        return finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
