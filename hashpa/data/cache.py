"""A decoded image cache: every image of a split decoded once, resized (short side S) and centre-
cropped to S x S, stored as uint8 in HDF5 and loaded whole into memory (or GPU memory).

Training from it skips JPEG decoding entirely; ``hashpa.data.augment`` then crops and flips whole
batches on the device. Files live under the cache folder, named by a hash of the image list (paths,
sizes, modification times) and S, so a changed dataset gets a new cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torchvision import transforms as T

from hashpa.data.builtin import cache_dir
from hashpa.data.folder import Sample
from hashpa.data.loading import ImageDataset, collate_skipping, usable_workers
from hashpa.errors import HashpaError
from hashpa.fileio import atomic_path

log = logging.getLogger(__name__)


@dataclass
class DecodedImages:
    images: torch.Tensor  # uint8 [n, 3, S, S]
    labels: torch.Tensor  # int64 [n]
    positions: np.ndarray  # [n]: index of each image in the sample list (unreadable ones are missing)

    def to(self, device: torch.device) -> "DecodedImages":
        return DecodedImages(self.images.to(device), self.labels.to(device), self.positions)


def cache_key(samples: list[Sample], size: int, interpolation: str) -> str:
    digest = hashlib.sha256(f"{size} {interpolation}".encode())
    for sample in samples:
        stat = os.stat(sample.path)
        digest.update(f"{sample.path}\0{sample.label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def decoded_images(samples: list[Sample], size: int, interpolation: str = "bilinear", workers: int = 4, folder: Path | None = None) -> DecodedImages:
    """The decoded cache of `samples` at size S, resized with `interpolation` (built on first use)."""
    path = (folder or cache_dir() / "decoded") / f"images-{cache_key(samples, size, interpolation)}-{size}px.h5"
    if not path.is_file():
        _build(samples, size, interpolation, workers, path)
    with h5py.File(path, "r") as h5:
        images = torch.from_numpy(h5["images"][()])
        labels = torch.from_numpy(h5["labels"][()])
        positions = h5["positions"][()]
    return DecodedImages(images, labels, positions)


def _build(samples: list[Sample], size: int, interpolation: str, workers: int, path: Path) -> None:
    if not samples:
        raise HashpaError("no images to cache")
    transform = T.Compose([T.Resize(size, interpolation=T.InterpolationMode(interpolation)), T.CenterCrop(size), T.PILToTensor()])
    loader = torch.utils.data.DataLoader(ImageDataset(samples, transform), batch_size=64, num_workers=usable_workers(workers), collate_fn=collate_skipping)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("decoding %d images once into %s", len(samples), path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        images = h5.create_dataset("images", (0, 3, size, size), maxshape=(None, 3, size, size), dtype=np.uint8, chunks=(1, 3, size, size))
        labels, positions = [], []
        for batch in loader:
            n = len(batch.indices)
            if n:
                images.resize(images.shape[0] + n, axis=0)
                images[-n:] = batch.images.numpy()
                labels += batch.labels.tolist()
                positions += batch.indices.tolist()
        h5.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        h5.create_dataset("positions", data=np.asarray(positions, dtype=np.int64))
    if len(positions) < len(samples):
        log.warning("%d of %d images could not be read and are left out of the cache", len(samples) - len(positions), len(samples))
