"""Decoding and resizing on the model's device: file bytes are read in DataLoader workers, JPEGs
are decoded a batch at a time by ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA), then resized and
centre-cropped there, so a GPU is not limited by per-image PIL work on a few CPU cores. Every file
first passes the checks of ``hashpa.data.decode`` (its header read by PIL: the pixel limit, the EXIF
orientation); other formats, and JPEGs the batch decoder rejects, are decoded by
``hashpa.data.decode.decode_image`` itself."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from hashpa.data.augment import normalize_batch
from hashpa.data.decode import READ_ERRORS, ImageError, check_pixels, decode_image
from hashpa.data.folder import Sample
from hashpa.data.preprocess import Preprocessing, test_resize

log = logging.getLogger(__name__)
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the same turn of a [C, H, W] tensor as PIL's ImageOps.exif_transpose
_UPRIGHT = {
    2: lambda x: x.flip(-1),
    3: lambda x: x.flip(-1).flip(-2),
    4: lambda x: x.flip(-2),
    5: lambda x: x.transpose(-2, -1),
    6: lambda x: torch.rot90(x, -1, dims=(-2, -1)),
    7: lambda x: x.transpose(-2, -1).flip(-1).flip(-2),
    8: lambda x: torch.rot90(x, 1, dims=(-2, -1)),
}


class FileBytes(torch.utils.data.Dataset):
    """Samples -> (raw file bytes as uint8 tensor, index); None when the file cannot be read."""

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        try:
            return torch.frombuffer(bytearray(Path(self.samples[index].path).read_bytes()), dtype=torch.uint8), index
        except (OSError, ValueError) as error:  # ValueError: an empty file has no buffer
            log.warning("skipping unreadable image %s (%s)", self.samples[index].path, error or "empty file")
            return None


def collate_bytes(items: list):
    good = [item for item in items if item is not None]
    return [b for b, _ in good], [i for _, i in good], len(items) - len(good)


def decode_batch(data: list[torch.Tensor], paths: list[Path], device: torch.device) -> tuple[list[torch.Tensor], list[int]]:
    """uint8 [3, H, W] images on `device`, upright, and the positions (in `data`) that decoded."""
    orientation = {i: _jpeg_orientation(data[i]) for i in range(len(data))}
    jpeg = [i for i, turn in orientation.items() if turn is not None]
    images: dict[int, torch.Tensor] = {}
    if jpeg:
        try:
            for i, image in zip(jpeg, decode_jpeg([data[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)):
                images[i] = _UPRIGHT.get(orientation[i], lambda x: x)(image)
        except RuntimeError:
            pass  # one bad file fails the batch call: the others are decoded one at a time below
    for i in range(len(data)):
        if i not in images:
            try:
                picture = decode_image(data[i].numpy().tobytes())
                images[i] = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).to(device)
            except ImageError as error:
                log.warning("skipping unreadable image %s (%s)", paths[i], error)
    kept = sorted(images)
    return [images[i] for i in kept], kept


def _jpeg_orientation(data: torch.Tensor) -> int | None:
    """The EXIF orientation of a JPEG within the pixel limit (1: upright), read from its header alone;
    None for anything else (another format, too many pixels, a damaged header): decode_image decides."""
    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as header:
            if header.format != "JPEG":
                return None
            check_pixels(header.size)
            return int(header.getexif().get(ORIENTATION_TAG, 1))
    except (*READ_ERRORS, ImageError):
        return None


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
