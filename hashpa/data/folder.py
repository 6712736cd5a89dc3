"""Finding images in a folder tree and reading them, skipping unreadable files."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image, UnidentifiedImageError

from hashpa.errors import HashpaError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
READ_ERRORS = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError)


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
    """Every image below root/<class>/..., labelled by its class folder's index in the sorted names."""
    root = Path(root)
    images = [p for p in find_images(root) if len(p.parts) > 1]
    classes = sorted({p.parts[0] for p in images})
    if not classes:
        raise HashpaError(
            f"no class sub-folders with images in {root}: expected {root}/<class name>/<image files> "
            f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    index = {name: i for i, name in enumerate(classes)}
    return [Sample(root / p, index[p.parts[0]]) for p in images], classes


def read_rgb(path: Path) -> Image.Image | None:
    """The image as RGB, or None (with a warning) when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except READ_ERRORS as error:
        log.warning("skipping unreadable image %s (%s)", path, error)
        return None


class ImageDataset(torch.utils.data.Dataset):
    """Samples -> (image tensor, label, index); an unreadable image yields None instead."""

    def __init__(self, samples: list[Sample], transform: Callable):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image = read_rgb(sample.path)
        if image is None:
            return None
        return self.transform(image), sample.label, index


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: int


def usable_workers(requested: int) -> int:
    """DataLoader workers: no more than this machine's cores (more only adds processes)."""
    return max(0, min(requested, os.cpu_count() or 1))


def collate_skipping(items: list) -> Batch:
    """Stack the readable items of a batch; count the unreadable ones."""
    good = [item for item in items if item is not None]
    skipped = len(items) - len(good)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), skipped)
    images, labels, indices = zip(*good)
    return Batch(torch.stack(images), torch.tensor(labels), torch.tensor(indices), skipped)
