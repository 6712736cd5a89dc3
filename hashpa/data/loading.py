"""Reading image files for a model: decoding that skips unreadable files, datasets, batches."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch

from hashpa.data.decode import read_rgb
from hashpa.data.folder import Sample

log = logging.getLogger(__name__)


class ImageDataset(torch.utils.data.Dataset):
    """Samples -> (image tensor, label, index); an unreadable image yields its index alone instead."""

    def __init__(self, samples: list[Sample], transform: Callable):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image = read_rgb(sample.path)
        if image is None:
            return index
        return self.transform(image), sample.label, index


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor  # positions of the images in the sample list
    skipped: int
    unreadable: tuple[int, ...] = ()  # positions of the samples that could not be read

def usable_workers(requested: int) -> int:
    """DataLoader workers: no more than this machine's cores (more only adds processes), and none under
    a file size limit (ulimit -f), which keeps workers from handing batches over in shared memory."""
    import resource

    workers = max(0, min(requested, os.cpu_count() or 1))
    if workers and resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        log.info("a file size limit is set (ulimit -f): images are loaded in the main process, without DataLoader workers")
        return 0
    return workers


def collate_skipping(items: list) -> Batch:
    """Stack the readable items of a batch; count the unreadable ones (which ImageDataset gives as their index)."""
    good = [item for item in items if isinstance(item, tuple)]
    unreadable = tuple(item for item in items if not isinstance(item, tuple))
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), len(unreadable), unreadable)
    images, labels, indices = zip(*good)
    return Batch(torch.stack(images), torch.tensor(labels), torch.tensor(indices), len(unreadable), unreadable)
