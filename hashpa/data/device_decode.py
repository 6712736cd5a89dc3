"""Decoding and resizing on the model's device: file bytes are read in DataLoader workers, JPEGs
are decoded a batch at a time by ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA), then resized and
centre-cropped there, so a GPU is not limited by per-image PIL work on a few CPU cores. Other
formats, and JPEGs the batch decoder rejects, are decoded one by one with ``decode_image``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from hashpa.data.augment import normalize_batch
from hashpa.data.folder import Sample
from hashpa.data.loading import READ_ERRORS
from hashpa.data.transforms import test_resize
from hashpa.models.backbones import Preprocessing

log = logging.getLogger(__name__)
JPEG = (".jpg", ".jpeg")


class FileBytes(torch.utils.data.Dataset):
    """Samples -> (raw file bytes as uint8 tensor, index); None when the file cannot be read."""

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        try:
            return torch.frombuffer(bytearray(Path(self.samples[index].path).read_bytes()), dtype=torch.uint8), index
        except OSError as error:
            log.warning("skipping unreadable image %s (%s)", self.samples[index].path, error)
            return None


def collate_bytes(items: list):
    good = [item for item in items if item is not None]
    return [b for b, _ in good], [i for _, i in good], len(items) - len(good)


def decode_batch(data: list[torch.Tensor], paths: list[Path], device: torch.device) -> tuple[list[torch.Tensor], list[int]]:
    """uint8 [3, H, W] images on `device` and the positions (in `data`) that decoded."""
    jpeg = [i for i, p in enumerate(paths) if Path(p).suffix.lower() in JPEG]
    images: dict[int, torch.Tensor] = {}
    if jpeg:
        try:
            for i, image in zip(jpeg, decode_jpeg([data[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)):
                images[i] = image
        except RuntimeError:
            pass  # one bad file fails the batch call: fall back to one at a time below
    for i in range(len(data)):
        if i not in images:
            try:
                images[i] = decode_image(data[i], mode=ImageReadMode.RGB).to(device)
            except (RuntimeError, *READ_ERRORS) as error:
                log.warning("skipping unreadable image %s (%s)", paths[i], error)
    kept = sorted(images)
    return [images[i] for i in kept], kept


def resize_center_crop(images: list[torch.Tensor], preprocessing: Preprocessing) -> torch.Tensor:
    """The test transform on the device: short side to test_resize (antialiased, the preprocessing's
    interpolation), centre crop to size, then the backbone's normalisation. Returns float [B, 3, size, size]."""
    size = preprocessing.input_size
    short = test_resize(preprocessing)
    out = []
    for image in images:
        h, w = image.shape[1:]
        scale = short / min(h, w)
        new_h, new_w = max(short, round(h * scale)), max(short, round(w * scale))
        resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode=preprocessing.interpolation, antialias=True, align_corners=False)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        out.append(resized[0, :, top : top + size, left : left + size].clamp(0, 255).round())
    return normalize_batch(torch.stack(out), preprocessing)
