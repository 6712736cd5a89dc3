"""Generations of an index directory: how an update becomes visible in one atomic step, and how
readers keep the files they opened until they are done with them.

    INDEX_DIR/gen-<id>/store.h5, gen-<id>/<kind>-<spec>.faiss    one generation's files
    INDEX_DIR/index.json                                          names the current generation's files

An update writes a new generation beside the current one and then replaces index.json (a rename:
the publishing step). A reader reads index.json, opens the store it names and holds a shared lock
on that store file while it searches (``hold_current``); a writer retires older generations only
when it can take the same lock exclusively (``retire_unused``), so nobody's search loses its files,
and what a reader still holds is retired by a later update. Index directories written before
generations keep their files at the top level; the first update retires them the same way.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from hashpa.errors import HashpaError
from hashpa.fileio import LOCK_FILE
from hashpa.indexdir.layout import GENERATION_NAME, INDEX_JSON, STORE_FILE, IndexMeta, read_meta
from hashpa.owned import remove_owned

log = logging.getLogger(__name__)

GENERATION_PREFIX = "gen-"
PROTECTED_TOP_LEVEL = {INDEX_JSON, LOCK_FILE, ".hashpa.json"}  # never a generation's file, whatever an old index.json lists
OPEN_ATTEMPTS = 20  # index.json re-read this often when updates keep replacing it while a reader opens it


def new_generation() -> str:
    """The folder name of a new generation."""
    return f"{GENERATION_PREFIX}{uuid.uuid4().hex[:16]}"


def hold_current(index_dir: Path) -> tuple[IndexMeta, BinaryIO]:
    """(index.json, the current store file open and share-locked): while the handle stays open,
    no writer removes that generation's files."""
    for _ in range(OPEN_ATTEMPTS):
        meta = read_meta(index_dir)
        store = index_dir / meta.store
        try:
            handle = open(store, "rb")
        except FileNotFoundError:
            if read_meta(index_dir).store_id == meta.store_id:  # not replaced meanwhile: the store is gone
                raise HashpaError(f"no index store at {store} ({index_dir / INDEX_JSON} names it); rebuild the index with hashpa index") from None
            continue
        except OSError as error:
            raise HashpaError(f"cannot read the index store {store} ({error.strerror})") from None
        fcntl.flock(handle, fcntl.LOCK_SH)  # waits while a writer removes this generation
        if os.fstat(handle.fileno()).st_nlink:
            return meta, handle
        handle.close()  # retired between opening and locking: read index.json again
    raise HashpaError(f"{index_dir} was replaced {OPEN_ATTEMPTS} times while it was being opened: try again when its updates pause")


def retire_unused(index_dir: Path, current: IndexMeta, previous: IndexMeta | None) -> list[str]:
    """Remove the generations that are not `current` and that no reader holds; with `previous` (the
    index.json before this update), also its files when they lie at the top level (the layout
    before generations). Returns what was removed."""
    removed = []
    for folder in sorted(index_dir.glob(f"{GENERATION_PREFIX}*")):
        if (is_generation_name(folder.name) and folder.is_dir() and not folder.is_symlink() and folder.name != Path(current.store).parent.name
                and _remove_if_free(index_dir, folder / STORE_FILE, [folder.name])):
            removed.append(folder.name)
    if previous is not None and "/" not in previous.store and previous.store != current.store:
        names = {previous.store, *previous.files, *(entry["file"] for entry in previous.indexes.values())}
        top_level = [name for name in sorted(names) if "/" not in name and name not in PROTECTED_TOP_LEVEL]
        if _remove_if_free(index_dir, index_dir / previous.store, top_level):
            removed += top_level
    return removed


def is_generation_name(name: str) -> bool:
    """Whether `name` is a generation folder's name as ``new_generation`` makes them."""
    return GENERATION_NAME.fullmatch(name) is not None


def _remove_if_free(index_dir: Path, store: Path, names: list[str]) -> bool:
    """Delete the member names `names` of `index_dir` when no reader holds `store` (a generation's
    lock); False when one does."""
    try:
        handle = open(store, "rb") if store.is_file() and not store.is_symlink() else None
    except FileNotFoundError:
        handle = None  # an interrupted update's generation without a store: nobody can hold it
    try:
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.debug("%s is still being read: its generation is removed by a later update", store)
                return False
        for name in names:
            remove_owned(index_dir, name)
        return True
    finally:
        if handle is not None:
            handle.close()
