"""Finding images in a folder tree and labelling them by their class folders."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from hashpa.data.labels import LEAF, class_of
from hashpa.errors import HashpaError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into the split's class list; -1 when unknown


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class Listing:
    """The image files below a folder, and those that cannot be used."""

    images: list[Path]  # relative paths, sorted
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why): links to nothing, names that are not UTF-8


def list_images(root: str | Path) -> Listing:
    """Image files below `root` (any depth, links followed once), as sorted relative paths.

    Hidden files and folders (names starting with '.') are skipped; a link that leads back into
    a folder already visited is not followed again, so link loops terminate. Image names that
    point nowhere or are not valid UTF-8 (the store keeps UTF-8 paths) are listed as unusable.
    """
    root = Path(root)
    if not root.is_dir():
        raise HashpaError(f"image folder not found: {root}")
    listing = Listing([])
    visited: set[tuple[int, int]] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in visited:
            subfolders[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in files:
            path = Path(folder, name)
            if name.startswith(".") or not is_image(path):
                continue
            relative = path.relative_to(root)
            if not _is_utf8(str(relative)):
                listing.unusable.append((os.fsencode(relative).decode("utf-8", "backslashreplace"), "its name is not valid UTF-8: rename it"))
            elif not path.is_file():
                listing.unusable.append((relative.as_posix(), "a link to nothing" if path.is_symlink() else "not a regular file"))
            else:
                listing.images.append(relative)
    listing.images.sort(key=lambda p: p.as_posix())
    return listing


def find_images(root: str | Path) -> list[Path]:
    """``list_images(root).images``, with a warning naming the unusable ones."""
    listing = list_images(root)
    if listing.unusable:
        shown = "; ".join(f"{path} ({why})" for path, why in listing.unusable[:5])
        log.warning("skipping %d unusable image files under %s: %s%s", len(listing.unusable), root, shown, " ..." if len(listing.unusable) > 5 else "")
    return listing.images


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
