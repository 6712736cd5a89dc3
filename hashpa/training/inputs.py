"""Training batches: decoded and augmented in DataLoader workers (files), or from a decoded image
cache cropped and flipped a whole batch at a time on the device (cache)."""

from __future__ import annotations

from typing import Iterator

import torch

from hashpa.data.augment import augment_batch
from hashpa.data.cache import decoded_images
from hashpa.data.folder import Sample, sample_labels
from hashpa.data.loading import ImageDataset, collate_skipping, usable_workers
from hashpa.data.preprocess import Preprocessing, test_resize
from hashpa.data.samplers import ClassBalancedBatches, ShuffledBatches
from hashpa.data.transforms import train_transform
from hashpa.distributed import rank_share
from hashpa.runs.config import TrainConfig

Batches = Iterator[tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]]  # (images, labels on the device, positions of unreadable samples)


def batch_sampler(config: TrainConfig, labels: list[int], epoch: int) -> list[list[int]]:
    """This process's part of the epoch's batches of indices: class-balanced with --per-class, else
    shuffled; seeded by (seed, epoch), so that every rank draws the same global batches and takes its
    own contiguous share of each (all of each in one process)."""
    sampler = (ClassBalancedBatches(labels, config.batch_size, config.per_class, config.seed) if config.per_class
               else ShuffledBatches(len(labels), config.batch_size, config.seed))
    sampler.set_epoch(epoch)
    return [rank_share(batch) for batch in sampler]


def multi_hot_labels(samples: list[Sample], num_classes: int) -> torch.Tensor | None:
    """bool [n, num_classes] labels of multi-label training samples (what the losses take), or None
    when every sample has one class (the batches' class indices then)."""
    labels = sample_labels(samples, num_classes)
    return torch.from_numpy(labels) if labels.ndim == 2 else None


class FileBatches:
    """Decode and augment in DataLoader workers (PIL), one image at a time."""

    def __init__(self, config: TrainConfig, samples: list[Sample], preprocessing: Preprocessing, device: torch.device, num_classes: int):
        self.config, self.samples, self.device = config, samples, device
        self.dataset = ImageDataset(samples, train_transform(preprocessing, (config.crop_scale_min, 1.0), config.hflip))
        self.multi_hot = multi_hot_labels(samples, num_classes)

    def epoch(self, epoch: int) -> Batches:
        c = self.config
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batch_sampler(c, [s.label for s in self.samples], epoch), num_workers=usable_workers(c.workers),
            collate_fn=collate_skipping, pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(c.seed * 1000 + epoch),
        )
        for batch in loader:
            labels = batch.labels if self.multi_hot is None else self.multi_hot[batch.indices]
            yield batch.images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True), batch.unreadable


class CachedBatches:
    """Images decoded once (hashpa.data.cache), cropped and flipped a whole batch at a time on the device."""

    def __init__(self, config: TrainConfig, samples: list[Sample], preprocessing: Preprocessing, device: torch.device, num_classes: int):
        self.config, self.samples, self.preprocessing, self.device = config, samples, preprocessing, device
        self._decoded = None
        self.multi_hot = multi_hot_labels(samples, num_classes)

    def epoch(self, epoch: int) -> Batches:
        c, pre = self.config, self.preprocessing
        if self._decoded is None:
            decoded = decoded_images(self.samples, test_resize(pre), pre.interpolation, c.workers)
            self._decoded = decoded.to(self.device) if self.device.type == "cuda" and _fits_on_gpu(decoded.images) else decoded
        data = self._decoded
        generator = torch.Generator().manual_seed(c.seed * 1000 + epoch)
        unreadable = tuple(sorted(set(range(len(self.samples))) - set(data.positions.tolist())))  # left out of the cache: once an epoch
        for indices in batch_sampler(c, data.labels.tolist(), epoch):
            index = torch.tensor(indices, device=data.images.device)
            images = data.images[index].to(self.device, non_blocking=True)
            inputs = augment_batch(images, pre.input_size, pre, (c.crop_scale_min, 1.0), c.hflip, generator)
            labels = data.labels[index] if self.multi_hot is None else self.multi_hot[torch.from_numpy(data.positions[index.cpu().numpy()])]
            yield inputs, labels.to(self.device, non_blocking=True), unreadable
            unreadable = ()


def training_batches(config: TrainConfig, samples: list[Sample], preprocessing: Preprocessing, device: torch.device, num_classes: int):
    """The input pipeline --data-path asks for (auto: the decoded cache on CUDA, files on the CPU);
    its labels are class indices [B], or multi-hot [B, num_classes] for multi-label samples."""
    path = config.data_path if config.data_path != "auto" else ("cache" if device.type == "cuda" else "files")
    return (CachedBatches if path == "cache" else FileBatches)(config, samples, preprocessing, device, num_classes)


def _fits_on_gpu(images: torch.Tensor) -> bool:
    free, _ = torch.cuda.mem_get_info()
    return images.numel() < 0.3 * free
