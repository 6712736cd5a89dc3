"""Batch samplers: plain shuffling and class-balanced batches (m images per class)."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from hashpa.errors import HashpaError


class ShuffledBatches:
    """Shuffled batches of `batch_size` indices, the last partial one dropped; the order depends
    only on (seed, epoch), so a resumed run sees the same batches."""

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if n < batch_size:
            raise HashpaError(f"the training set has {n} images, fewer than the batch size {batch_size}: lower --batch-size")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size]


class ClassBalancedBatches(ShuffledBatches):
    """Batches of batch_size / m classes with m images each (drawn with replacement when a
    class has fewer than m images); as many batches per epoch as plain shuffling would give."""

    def __init__(self, labels: Sequence[int], batch_size: int, per_class: int, seed: int = 0):
        super().__init__(len(labels), batch_size, seed)
        if per_class < 1 or batch_size % per_class:
            raise HashpaError(f"--batch-size ({batch_size}) must be a multiple of --per-class ({per_class})")
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_class.setdefault(int(label), []).append(index)
        self.groups = [torch.tensor(v) for _, v in sorted(by_class.items())]
        self.per_class = per_class
        self.classes_per_batch = batch_size // per_class
        if self.classes_per_batch > len(self.groups):
            raise HashpaError(
                f"a batch of {batch_size} with {per_class} per class needs {self.classes_per_batch} classes; "
                f"the training set has {len(self.groups)}"
            )

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        for _ in range(len(self)):
            classes = torch.randperm(len(self.groups), generator=generator)[: self.classes_per_batch]
            batch = []
            for c in classes.tolist():
                group = self.groups[c]
                if len(group) >= self.per_class:
                    picks = torch.randperm(len(group), generator=generator)[: self.per_class]
                else:
                    picks = torch.randint(len(group), (self.per_class,), generator=generator)
                batch += group[picks].tolist()
            yield batch
