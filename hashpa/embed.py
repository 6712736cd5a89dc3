"""Running a trained model over images: the public ``hashpa.load(run).embed(images)``, and batched
embedding of image files (reader: DataLoader workers; mapper: the model; the caller writes), shared
by training's evaluation, indexing and search."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from hashpa.data.folder import Sample, sample_labels
from hashpa.data.loading import Batch, ImageDataset, collate_skipping, usable_workers
from hashpa.data.preprocess import TestTransform
from hashpa.data.query_images import query_pictures
from hashpa.devices import autocast, resolve_device
from hashpa.errors import HashpaError
from hashpa.models.hashing_model import HashingModel
from hashpa.settings import whole_number

log = logging.getLogger(__name__)


class Model:
    """A trained model ready to embed images: ``emb, codes = model.embed(images)``."""

    def __init__(self, network: HashingModel, device: torch.device, source: str = "", checkpoint: str = "", state: dict | None = None):
        self.network = network.to(device).eval()
        self.device = device
        self.source, self.checkpoint = source, checkpoint
        self.state = state or {}  # the checkpoint it was loaded from (epoch, config, best, ...)
        self._fingerprint: str | None = None

    @property
    def bits(self) -> int:
        return self.network.config.bits

    @property
    def dim(self) -> int:
        return self.network.config.dim

    @property
    def preprocessing(self):
        return self.network.preprocessing

    @property
    def fingerprint(self) -> str:
        """Identifies the weights and config (what an index records as the model it was built with)."""
        if self._fingerprint is None:
            self._fingerprint = self.network.fingerprint()
        return self._fingerprint

    def embed(self, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Both representations of `images`: (float32 embeddings [N, dim], L2-normalised; packed uint8
        codes [N, bits/8]).

        `images`: one image or a sequence of them, each a PIL image, a file path, a uint8 array
        [H, W, 3] or [H, W] (channels last), or a tensor [3, H, W] (channels first: uint8, or float
        with every value in [0, 1]); a uint8 array [N, H, W, 3] or a tensor [N, 3, H, W] is a batch.
        Anything else is refused with a HashpaError saying what to change, never guessed: a float
        tensor in 0..255 (divide it by 255), an array in channels-first order, an empty image, NaN
        pixels. The model's own preprocessing (resize, centre crop, normalisation) is applied to each.
        """
        batch_size = whole_number(batch_size, "batch_size")
        transform = TestTransform(self.preprocessing)
        pictures = query_pictures(images)
        embeddings, codes = [], []
        for start in range(0, len(pictures), batch_size):
            batch = torch.stack([transform(p) for p in pictures[start : start + batch_size]]).to(self.device)
            with autocast(self.device):
                e, c = self.network.embed(batch)
            embeddings.append(e.float().cpu().numpy())
            codes.append(c.cpu().numpy())
        return np.concatenate(embeddings), np.concatenate(codes)

    def embed_files(self, paths: Sequence[Path], batch_size: int = 64, workers: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings [n, dim], packed codes [n, bits/8], int64 positions [n] in `paths` of the n
        readable files); unreadable files are skipped with a warning."""
        embeddings, codes, positions, _ = embed_all(self.network, [Sample(Path(p), -1) for p in paths], self.device,
                                                    batch_size=batch_size, workers=workers)
        return embeddings, codes, positions


def load(source: str | Path, checkpoint: str = "best", device: str | torch.device = "auto") -> Model:
    """The trained model of a run directory (its `checkpoint`: "best" or "last") or of a checkpoint file."""
    from hashpa.runs.checkpoints import load_network

    target = resolve_device(device)
    network, state = load_network(source, checkpoint, target)
    return Model(network, target, str(source), state["loaded_from"], state)


@dataclass
class EmbeddedBatch:
    positions: np.ndarray  # int64 [n]: positions in the input sequence of the images that were read
    embeddings: np.ndarray  # float32 [n, dim] (or what `output` asked for)
    codes: np.ndarray  # uint8 [n, bits/8] (empty [n, 0] for outputs without codes)
    skipped: int  # unreadable images in this batch
    features: np.ndarray | None = None  # float32 [n, C]: the pooled backbone features, with output "embed_and_features"


# the model's embeddings and codes; what its hash head reads; its pooled backbone features; embeddings, codes and features
OUTPUTS = ("embed", "hash_inputs", "features", "embed_and_features")


def embed_batches(
    network: HashingModel,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 128,
    workers: int = 0,
    progress: str | None = None,
    output: str = "embed",
    decode: str = "pil",
) -> Iterator[EmbeddedBatch]:
    """Embed `samples` in order, `batch_size` at a time, with the network's test transform.

    decode "pil": images are decoded and transformed in `workers` DataLoader processes, overlapping
    the network; "device": workers only read the files, decoding and resizing run on `device`
    (hashpa.data.device_decode). Unreadable images are skipped with a warning and counted.
    `output` (one of OUTPUTS): "hash_inputs" and "features" put those in ``embeddings`` instead,
    with ``codes`` empty.
    """
    from tqdm import tqdm

    decoded = _device_decoded if decode == "device" else _pil_decoded
    batches = decoded(network, samples, device, batch_size, workers)
    network.eval()
    run = {"embed": lambda x: (*network.embed(x), None), "hash_inputs": lambda x: (network.hash_inputs(x), None, None),
           "features": lambda x: (network.pooled_features(x), None, None), "embed_and_features": network.embed_with_features}[output]
    widths = {"embed": network.config.dim, "hash_inputs": network.hash_head.in_features, "features": network.embedding.in_features,
              "embed_and_features": network.config.dim}
    with tqdm(total=len(samples), desc=progress, unit="img", disable=None if progress else True, leave=False) as bar:
        for batch in batches:
            if len(batch.indices):
                with autocast(device):
                    embeddings, codes, features = run(batch.images)
                embeddings = embeddings.float().cpu().numpy()
                codes = codes.cpu().numpy() if codes is not None else np.empty((len(embeddings), 0), np.uint8)
                features = None if features is None else features.float().cpu().numpy()
            else:  # a batch of unreadable images only
                embeddings = np.empty((0, widths[output]), np.float32)
                codes = np.empty((0, network.config.bits // 8 if output.startswith("embed") else 0), np.uint8)
                features = np.empty((0, network.embedding.in_features), np.float32) if output == "embed_and_features" else None
            bar.update(len(batch.indices) + batch.skipped)
            yield EmbeddedBatch(batch.indices.numpy(), embeddings, codes, batch.skipped, features)


def _pil_decoded(network: HashingModel, samples: Sequence[Sample], device: torch.device, batch_size: int, workers: int):
    dataset = ImageDataset(list(samples), TestTransform(network.preprocessing))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=usable_workers(workers), collate_fn=collate_skipping,
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        yield Batch(batch.images.to(device, non_blocking=True), batch.labels, batch.indices, batch.skipped)


def _device_decoded(network: HashingModel, samples: Sequence[Sample], device: torch.device, batch_size: int, workers: int):
    from hashpa.data.device_decode import FileBytes, collate_bytes, decode_batch, resize_center_crop

    samples = list(samples)
    loader = torch.utils.data.DataLoader(FileBytes(samples), batch_size=batch_size, shuffle=False,
                                         num_workers=usable_workers(workers), collate_fn=collate_bytes)
    for data, indices, unreadable in loader:
        images, kept = decode_batch(data, [samples[i].path for i in indices], device)
        indices = torch.tensor([indices[i] for i in kept], dtype=torch.long)
        skipped = unreadable + len(data) - len(kept)
        tensor = resize_center_crop(images, network.preprocessing) if images else torch.empty(0)
        yield Batch(tensor, torch.tensor([samples[i].label for i in indices.tolist()], dtype=torch.long), indices, skipped)


def embed_all(network: HashingModel, samples: Sequence[Sample], device: torch.device, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(embeddings [n, dim], codes [n, bits/8], positions [n] of the readable samples, skipped count)."""
    return _joined(list(embed_batches(network, samples, device, **kwargs)))[:4]


def _joined(parts: list[EmbeddedBatch]) -> tuple:
    if not parts:
        raise HashpaError("no images to embed")
    features = None if parts[0].features is None else np.concatenate([p.features for p in parts])
    return (np.concatenate([p.embeddings for p in parts]), np.concatenate([p.codes for p in parts]), np.concatenate([p.positions for p in parts]),
            sum(p.skipped for p in parts), features)


@dataclass
class Embedded:
    """What a model gives for the readable images of a list of labelled samples."""

    embeddings: np.ndarray  # float32 [n, dim], L2-normalised
    codes: np.ndarray  # uint8 [n, bits/8]
    labels: np.ndarray  # int64 [n], or multi-hot bool [n, classes]
    positions: np.ndarray | None = None  # int64 [n]: positions of these images in the sample list (unreadable ones are missing)
    features: np.ndarray | None = None  # float32 [n, C]: the pooled backbone features (output "embed_and_features")

    def representation(self, name: str) -> np.ndarray:
        """"float" -> embeddings, "codes" -> codes."""
        return self.embeddings if name == "float" else self.codes


def embed_labelled(network: HashingModel, samples: Sequence[Sample], device: torch.device, num_classes: int | None = None, **kwargs) -> Embedded:
    """embed_all over `samples`, with the labels of the images that could be read (``sample_labels``:
    multi-hot [n, num_classes] for multi-label samples); kwargs as embed_batches'."""
    embeddings, codes, positions, _, features = _joined(list(embed_batches(network, samples, device, **kwargs)))
    return Embedded(embeddings, codes, sample_labels(samples, num_classes)[positions], positions, features)
