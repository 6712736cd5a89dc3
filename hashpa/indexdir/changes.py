"""What an index update must embed: the folder's files compared, as arrays, with rows embedded
before (the previous store, or finished batches of an interrupted run)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashpa.data.folder import list_images, sample_labels


@dataclass
class FolderFiles:
    """The image files of a folder, sorted by path, with what tells whether they changed."""

    paths: np.ndarray  # object [N] of str: relative posix paths, sorted
    sizes: np.ndarray  # int64 [N]
    mtimes: np.ndarray  # int64 [N], nanoseconds: each file's change stamp (``change_stamp``)
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of image files that cannot be indexed
    classes: np.ndarray | None = None  # object [N]: each file's class name, when a dataset gives them (else the path's)
    label_sets: np.ndarray | None = None  # bool [N, C]: each file's classes, for multi-label data (columns: class_names)
    class_names: list[str] | None = None  # the dataset's classes, with label_sets
    unreadable_folders: list[str] = field(default_factory=list)  # relative posix paths of folders that could not be listed

    def __len__(self) -> int:
        return len(self.paths)


def scan_folder(folder: Path) -> FolderFiles:
    listing = list_images(folder)
    sizes, mtimes = np.empty(len(listing.images), np.int64), np.empty(len(listing.images), np.int64)
    for i, path in enumerate(listing.images):
        stat = os.stat(os.path.join(folder, path))
        sizes[i], mtimes[i] = stat.st_size, change_stamp(stat)
    return FolderFiles(np.array(listing.images, dtype=object), sizes, mtimes, listing.unusable, unreadable_folders=listing.unreadable_folders)


def change_stamp(stat: os.stat_result) -> int:
    """When a file last changed, in ns: the later of its modification time and its status change time.
    A copy that keeps the modification time (cp -p, rsync -a, tar x) still sets a new status change
    time, which nobody can set back, so a replaced file is never taken for the one embedded."""
    return max(stat.st_mtime_ns, stat.st_ctime_ns)


def scan_samples(root: Path, samples: list, class_names: list[str]) -> FolderFiles:
    """The files of a dataset split (``hashpa.data.Sample`` list, labels indexing `class_names`), as
    paths relative to `root`, with their classes (and every class of multi-label samples)."""
    root = root.absolute()
    relative = [Path(s.path).absolute().relative_to(root).as_posix() for s in samples]
    order = np.argsort(np.array(relative, dtype=object), kind="stable")
    stats = [os.stat(samples[i].path) for i in order]
    multi = sample_labels(samples, len(class_names))
    return FolderFiles(np.array(relative, dtype=object)[order], np.array([s.st_size for s in stats], dtype=np.int64),
                       np.array([change_stamp(s) for s in stats], dtype=np.int64),
                       classes=np.array([class_names[samples[i].label] if samples[i].label >= 0 else "" for i in order], dtype=object),
                       label_sets=multi[order] if multi.ndim == 2 else None, class_names=list(class_names) if multi.ndim == 2 else None)


def unchanged_rows(files: FolderFiles, paths: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray) -> np.ndarray:
    """int64 [len(files)]: for each file, the row of (paths, sizes, mtimes) that embedded it as it is
    now (same path, size and modification time), else -1. `paths` need not be sorted."""
    found = np.full(len(files), -1, dtype=np.int64)
    if not len(paths) or not len(files):
        return found
    order = np.argsort(paths, kind="stable")
    sorted_paths = paths[order]
    at = np.minimum(np.searchsorted(sorted_paths, files.paths), len(paths) - 1)
    rows = order[at]
    same = (sorted_paths[at] == files.paths) & (sizes[rows] == files.sizes) & (mtimes[rows] == files.mtimes)
    found[same] = rows[same]
    return found


def contained(files: FolderFiles, paths: np.ndarray) -> np.ndarray:
    """bool [len(paths)]: which of `paths` are among the folder's files (whatever their size or time)."""
    if not len(files) or not len(paths):
        return np.zeros(len(paths), dtype=bool)
    at = np.minimum(np.searchsorted(files.paths, paths), len(files) - 1)
    return files.paths[at] == paths


def keep_unreadable_folders(files: FolderFiles, paths: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray) -> tuple[FolderFiles, int]:
    """(`files` with the rows of (paths, sizes, mtimes) that lie in a folder the scan could not read
    added as they were, how many were added): an unreadable folder's images are kept, never taken
    for removed."""
    if not files.unreadable_folders or not len(paths) or files.classes is not None:
        return files, 0
    prefixes = tuple("" if folder == "." else folder.rstrip("/") + "/" for folder in files.unreadable_folders)
    kept = np.array([str(path).startswith(prefixes) for path in paths], dtype=bool) & ~contained(files, paths)
    if not kept.any():
        return files, 0
    joined = np.concatenate([files.paths, paths[kept]])
    order = np.argsort(joined, kind="stable")
    merged = FolderFiles(joined[order], np.concatenate([files.sizes, sizes[kept]])[order], np.concatenate([files.mtimes, mtimes[kept]])[order],
                         files.unusable, unreadable_folders=files.unreadable_folders)
    return merged, int(kept.sum())
