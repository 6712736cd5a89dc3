"""Finding images in a folder tree and labelling them by their class folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hashpa.data.labels import class_of
from hashpa.errors import HashpaError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into the split's class list; -1 when unknown


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(root: str | Path) -> list[Path]:
    """Image files below `root` (any depth, links followed once), as sorted relative paths.

    Hidden files and folders (names starting with '.') are skipped; a link that leads back into
    a folder already visited is not followed again, so link loops terminate.
    """
    root = Path(root)
    if not root.is_dir():
        raise HashpaError(f"image folder not found: {root}")
    found: list[Path] = []
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
            if not name.startswith(".") and is_image(path) and path.is_file():
                found.append(path.relative_to(root))
    return sorted(found, key=lambda p: p.as_posix())


def labelled_samples(root: str | Path) -> tuple[list[Sample], list[str]]:
    """Every image below `root` that has a class (``hashpa.data.labels.class_of``), labelled by its
    class's index in the sorted class names; and those names."""
    root = Path(root)
    images = [p for p in find_images(root) if class_of(p) is not None]
    classes = sorted({class_of(p) for p in images})
    if not classes:
        raise HashpaError(
            f"no class sub-folders with images in {root}: expected {root}/<class name>/<image files> "
            f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    index = {name: i for i, name in enumerate(classes)}
    return [Sample(root / p, index[class_of(p)]) for p in images], classes
