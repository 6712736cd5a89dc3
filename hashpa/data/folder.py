"""Finding images in a folder tree and labelling them by their class folders."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hashpa.data.labels import LEAF, class_of
from hashpa.errors import HashpaError
from hashpa.outputs import is_output

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into the split's class list; -1 when unknown; a multi-label sample's first label
    labels: tuple[int, ...] | None = None  # every label of a multi-label sample (None: the one `label`)


def sample_labels(samples: Sequence[Sample], num_classes: int | None = None) -> np.ndarray:
    """The labels of `samples` as every metric and loss takes them: int64 [n] class indices, or, when
    any sample is multi-label, a multi-hot bool [n, num_classes] (default: the largest label + 1)."""
    if not any(s.labels is not None for s in samples):
        return np.array([s.label for s in samples], dtype=np.int64)
    sets = [s.labels if s.labels is not None else ((s.label,) if s.label >= 0 else ()) for s in samples]
    width = num_classes or 1 + max((max(labels) for labels in sets if labels), default=0)
    matrix = np.zeros((len(samples), width), dtype=bool)
    for row, labels in enumerate(sets):
        matrix[row, list(labels)] = True
    return matrix


def is_image(path: str | Path) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


@dataclass
class Listing:
    """The image files below a folder, and those that cannot be used."""

    images: list[str]  # relative posix paths, sorted (strings: a folder may hold millions)
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why): links to nothing, names that are not UTF-8
    unreadable_folders: list[str] = field(default_factory=list)  # relative posix paths of folders that could not be listed


def list_images(root: str | Path) -> Listing:
    """Image files below `root` (any depth, links followed once), as sorted relative paths.

    Hidden files and folders (names starting with '.') are skipped, and so is everything hashpa wrote
    there (run and index directories, result grids: ``hashpa.outputs.is_output``); a link that leads back into
    a folder already visited is not followed again, so link loops terminate. Image names that
    point nowhere or are not valid UTF-8 (the store keeps UTF-8 paths), and folders that cannot be
    read, are listed as unusable (the folders also as unreadable_folders).
    """
    root = Path(root)
    if not root.is_dir():
        raise HashpaError(f"image folder not found: {root}")
    listing = Listing([])
    visited: set[tuple[int, int]] = set()

    def unreadable(error: OSError) -> None:
        relative = Path(error.filename).relative_to(root).as_posix() if error.filename else "."
        listing.unreadable_folders.append(relative)
        listing.unusable.append((relative + "/", f"a folder that cannot be read ({error.strerror or error})"))

    for folder, subfolders, files in os.walk(root, followlinks=True, onerror=unreadable):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in visited:
            subfolders[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        hashpa_folder, outputs = is_output(folder, files)
        if hashpa_folder:  # a run or index directory inside the image folder: nothing in it is an image to use
            subfolders[:] = []
            continue
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        prefix = Path(folder).relative_to(root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        for name in files:
            if name.startswith(".") or not is_image(name) or name in outputs:
                continue
            relative, full = prefix + name, os.path.join(folder, name)
            if not _is_utf8(relative):
                listing.unusable.append((os.fsencode(relative).decode("utf-8", "backslashreplace"), "its name is not valid UTF-8: rename it"))
            elif not os.path.isfile(full):
                listing.unusable.append((relative, "a link to nothing" if os.path.islink(full) else "not a regular file"))
            else:
                listing.images.append(relative)
    listing.images.sort()
    return listing


def find_images(root: str | Path) -> list[Path]:
    """``list_images(root).images`` as paths, with a warning naming the unusable ones."""
    listing = list_images(root)
    if listing.unusable:
        shown = "; ".join(f"{path} ({why})" for path, why in listing.unusable[:5])
        log.warning("skipping %d unusable image files under %s: %s%s", len(listing.unusable), root, shown, " ..." if len(listing.unusable) > 5 else "")
    return [Path(p) for p in listing.images]


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def labelled_samples(root: str | Path, class_depth: int = LEAF) -> tuple[list[Sample], list[str]]:
    """Every image below `root` that has a class (``hashpa.data.labels.class_of`` at `class_depth`),
    labelled by its class's index in the sorted class names; and those names."""
    root = Path(root)
    images = [p for p in find_images(root) if class_of(p, class_depth) is not None]
    classes = sorted({class_of(p, class_depth) for p in images})
    if not classes:
        raise HashpaError(
            f"no class sub-folders with images in {root}: expected {root}/<class name>/<image files> "
            f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    index = {name: i for i, name in enumerate(classes)}
    return [Sample(root / p, index[class_of(p, class_depth)]) for p in images], classes
