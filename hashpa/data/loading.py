"""Reading image files for a model: decoding that skips unreadable files, datasets, batches."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image, UnidentifiedImageError

from hashpa.data.folder import Sample

log = logging.getLogger(__name__)

READ_ERRORS = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError)


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
