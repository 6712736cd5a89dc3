"""Running a model over image files in batches: shared by evaluation during training and indexing."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from hashpa.data.folder import Batch, ImageDataset, Sample, collate_skipping, usable_workers
from hashpa.data.transforms import test_transform
from hashpa.errors import HashpaError
from hashpa.models.hashing_model import HashingModel

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HashpaError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu or auto)")
    try:
        return torch.device(device)
    except RuntimeError:
        raise HashpaError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; nothing on the CPU (where bf16 convolutions are slow)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class EmbeddedBatch:
    positions: np.ndarray  # int64 [n]: positions in the input sequence of the images that were read
    embeddings: np.ndarray  # float32 [n, dim]
    codes: np.ndarray  # uint8 [n, bits/8]
    skipped: int  # unreadable images in this batch


def embed_batches(
    model: HashingModel,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 128,
    workers: int = 0,
    progress: str | None = None,
    hash_inputs: bool = False,
    decode: str = "pil",
) -> Iterator[EmbeddedBatch]:
    """Embed `samples` in order, `batch_size` at a time, with the model's test transform.

    decode "pil": images are decoded and transformed in `workers` DataLoader processes, overlapping
    the model; "device": workers only read the files, decoding and resizing run on `device`
    (hashpa.data.device_decode). Unreadable images are skipped with a warning and counted. With
    hash_inputs, ``embeddings`` holds what the hash head reads instead (and ``codes`` is empty).
    """
    from tqdm import tqdm

    batches = _device_decoded(model, samples, device, batch_size, workers) if decode == "device" else _pil_decoded(model, samples, device, batch_size, workers)
    model.eval()
    with tqdm(total=len(samples), desc=progress, unit="img", disable=None if progress else True, leave=False) as bar:
        for batch in batches:
            if len(batch.indices):
                with autocast(device):
                    images = batch.images
                    if hash_inputs:
                        embeddings, codes = model.hash_inputs(images), torch.empty((len(images), 0), dtype=torch.uint8)
                    else:
                        embeddings, codes = model.embed(images)
                embeddings, codes = embeddings.float().cpu().numpy(), codes.cpu().numpy()
            else:
                embeddings = np.empty((0, model.config.dim), np.float32)
                codes = np.empty((0, model.config.bits // 8), np.uint8)
            bar.update(len(batch.indices) + batch.skipped)
            yield EmbeddedBatch(batch.indices.numpy(), embeddings, codes, batch.skipped)


def _pil_decoded(model: HashingModel, samples: Sequence[Sample], device: torch.device, batch_size: int, workers: int):
    dataset = ImageDataset(list(samples), test_transform(model.preprocessing, model.preprocessing.input_size))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=usable_workers(workers), collate_fn=collate_skipping,
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        yield Batch(batch.images.to(device, non_blocking=True), batch.labels, batch.indices, batch.skipped)


def _device_decoded(model: HashingModel, samples: Sequence[Sample], device: torch.device, batch_size: int, workers: int):
    from hashpa.data.device_decode import FileBytes, collate_bytes, decode_batch, resize_center_crop

    samples = list(samples)
    loader = torch.utils.data.DataLoader(FileBytes(samples), batch_size=batch_size, shuffle=False,
                                         num_workers=usable_workers(workers), collate_fn=collate_bytes)
    for data, indices, unreadable in loader:
        images, kept = decode_batch(data, [samples[i].path for i in indices], device)
        indices = torch.tensor([indices[i] for i in kept], dtype=torch.long)
        skipped = unreadable + len(data) - len(kept)
        tensor = resize_center_crop(images, model.preprocessing) if images else torch.empty(0)
        yield Batch(tensor, torch.tensor([samples[i].label for i in indices.tolist()], dtype=torch.long), indices, skipped)


def embed_all(model: HashingModel, samples: Sequence[Sample], device: torch.device, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(embeddings [n, dim], codes [n, bits/8], positions [n] of the readable samples, skipped count)."""
    parts = list(embed_batches(model, samples, device, **kwargs))
    if not parts:
        raise HashpaError("no images to embed")
    return (
        np.concatenate([p.embeddings for p in parts]),
        np.concatenate([p.codes for p in parts]),
        np.concatenate([p.positions for p in parts]),
        sum(p.skipped for p in parts),
    )


@dataclass
class Embedded:
    """What a model gives for the readable images of a list of labelled samples."""

    embeddings: np.ndarray  # float32 [n, dim], L2-normalised
    codes: np.ndarray  # uint8 [n, bits/8]
    labels: np.ndarray  # int64 [n]

    def representation(self, name: str) -> np.ndarray:
        """"float" -> embeddings, "codes" -> codes."""
        return self.embeddings if name == "float" else self.codes


def embed_labelled(model: HashingModel, samples: Sequence[Sample], device: torch.device, **kwargs) -> Embedded:
    """embed_all over `samples`, with the labels of the images that could be read (kwargs as embed_batches')."""
    embeddings, codes, positions, _ = embed_all(model, samples, device, **kwargs)
    return Embedded(embeddings, codes, np.array([samples[i].label for i in positions], dtype=np.int64))
