"""Batched augmentation on tensors, on whatever device they live: the paper's RandomResizedCrop
and horizontal flip for a whole batch in a few kernels (``torchvision.ops.roi_align``), so a GPU
is not held back by per-image work on the CPU."""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align

from hashpa.data.preprocess import Preprocessing


def random_crop_boxes(batch: int, height: int, width: int, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), generator: torch.Generator | None = None,
                      attempts: int = 10) -> torch.Tensor:
    """Boxes [batch, 4] (x1, y1, x2, y2) drawn as torchvision's RandomResizedCrop draws them:
    area fraction uniform in `scale`, log aspect ratio uniform in `ratio`, the first of `attempts`
    draws that fits, else the largest centred crop within `ratio`."""
    area = height * width
    target = area * torch.empty(batch, attempts).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(batch, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), -1)
    pick = first.clamp(min=0)[:, None]
    w, h = w.gather(1, pick)[:, 0], h.gather(1, pick)[:, 0]
    u = torch.rand(batch, 2, generator=generator)
    x = torch.floor(u[:, 0] * (width - w + 1))
    y = torch.floor(u[:, 1] * (height - h + 1))
    fallback = first < 0
    if fallback.any():
        in_ratio = width / height
        fw = width if in_ratio <= ratio[1] else round(height * ratio[1])
        fh = height if in_ratio >= ratio[0] else round(width / ratio[0])
        fw, fh = (min(fw, width), min(fh, height))
        w[fallback], h[fallback] = float(fw), float(fh)
        x[fallback], y[fallback] = float((width - fw) // 2), float((height - fh) // 2)
    return torch.stack([x, y, x + w, y + h], dim=1)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop boxes [B, 4] (pixels) from images [B, C, H, W] and resize each to size x size (bilinear)."""
    indices = torch.arange(len(images), device=images.device, dtype=torch.float32)[:, None]
    rois = torch.cat([indices, boxes.to(images.device, torch.float32)], dim=1)
    x = images.float()
    box_w = (boxes[:, 2] - boxes[:, 0]).max().item()
    sampling = max(1, math.ceil(box_w / size))  # enough samples per output pixel to average when shrinking
    return roi_align(x, rois, output_size=size, spatial_scale=1.0, sampling_ratio=sampling, aligned=True)


def augment_batch(images: torch.Tensor, size: int, preprocessing: Preprocessing, scale=(0.08, 1.0),
                  hflip: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images [B, 3, H, W] (any device) -> normalised float [B, 3, size, size]: random
    resized crop, optional horizontal flip, then the backbone's range, channel order and mean/std."""
    boxes = random_crop_boxes(len(images), images.shape[2], images.shape[3], scale, generator=generator)
    x = resized_crops(images, boxes, size)
    if hflip:
        flip = (torch.rand(len(images), generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return normalize_batch(x, preprocessing)


def center_crop_batch(images: torch.Tensor, size: int, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 images [B, 3, H, W] -> normalised float centre crops [B, 3, size, size]."""
    top, left = (images.shape[2] - size) // 2, (images.shape[3] - size) // 2
    return normalize_batch(images[:, :, top : top + size, left : left + size].float(), preprocessing)


def normalize_batch(x: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """float pixels in [0, 255] -> the backbone's input."""
    if preprocessing.bgr:
        x = x.flip(1)
    mean = torch.tensor(preprocessing.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, device=x.device).view(1, 3, 1, 1)
    return (x * (preprocessing.input_range / 255.0) - mean) / std
