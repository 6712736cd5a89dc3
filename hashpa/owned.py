"""What hashpa may delete: the one way it removes a file or folder, only one of its own, inside the
directory that owns it, links never followed; and the rule for the names its state files record.

Every name read from disk that hashpa would open or remove (index.json's files and generations, a
manifest's outputs) is a *member name*: one or two plain path parts (``store.h5``,
``gen-0123abcd4567ef89/store.h5``), no ``.``, ``..``, empty or absolute part, no backslash or NUL.
``member_path`` turns it into a path inside its directory or refuses it; ``remove_owned`` deletes it.
"""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path, PurePosixPath

from hashpa.errors import HashpaError

log = logging.getLogger(__name__)

MAX_PARTS = 2  # a file of the directory, or a file of one of its generation folders


def member_problem(name: object, max_parts: int = MAX_PARTS) -> str | None:
    """Why `name` is not a member name (see the module), or None when it is."""
    if not isinstance(name, str) or not name:
        return f"{name!r} is not a file name"
    if "\\" in name or "\0" in name or name.startswith("/"):
        return f"{name!r} is not a plain relative name"
    parts = name.split("/")
    if len(parts) > max_parts or any(part in ("", ".", "..") for part in parts):
        return f"{name!r} leaves its directory or is not a plain name"
    return None


def member_path(directory: str | Path, name: str, what: str = "a name") -> Path:
    """`directory`/`name` for a member name, else a HashpaError naming `what` recorded it."""
    problem = member_problem(name)
    if problem:
        raise HashpaError(f"{what} in {directory}: {problem}")
    return Path(directory) / PurePosixPath(name)


def remove_owned(directory: str | Path, name: str) -> bool:
    """Delete `directory`/`name` (a member name, see the module): a file, a link (the link itself, never
    what it points to) or a folder with everything in it (links inside removed as links). Refused
    (HashpaError) when the name leaves `directory` or the path, its links resolved up to the last part,
    lies outside it. Returns whether something was removed."""
    path = member_path(directory, name, "a file to remove")
    owner = Path(directory).resolve()
    parent = path.parent.resolve()
    if parent != owner and not parent.is_relative_to(owner):
        raise HashpaError(f"refusing to remove {path}: it lies outside {owner} (a link in its path?)")
    target = parent / path.name
    try:
        if target.is_symlink() or not target.is_dir():
            target.unlink()
        else:
            shutil.rmtree(target)
        return True
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EBUSY):
            log.warning("could not remove %s (%s): remove it by hand when it is no longer needed", target, error.strerror)
            return False
        raise HashpaError(f"could not remove {target}: {error.strerror or error}") from None
