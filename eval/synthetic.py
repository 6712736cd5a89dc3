"""Generated image folders: small labelled photos-like images for the tests and the reliability scripts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image


def stripe_image(label: int, rng: np.random.Generator, size: int = 32, classes: int = 6) -> Image.Image:
    """A noisy striped image whose stripe angle encodes the class; frequency, phase and colour vary."""
    angle = math.pi * label / classes
    frequency = rng.uniform(0.25, 0.45)
    phase = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:size, 0:size]
    wave = np.sin(frequency * (x * math.cos(angle) + y * math.sin(angle)) + phase)
    colour = rng.uniform(0.3, 1.0, size=3)
    pixels = 0.5 + 0.4 * wave[..., None] * colour + rng.normal(0, 0.15, size=(size, size, 3))
    return Image.fromarray(np.uint8(np.clip(pixels, 0, 1) * 255))


def make_image_folder(root: Path, classes: int = 6, per_class: int = 20, size: int = 32, seed: int = 0) -> Path:
    """root/class_NN/img_NNN.png: `per_class` stripe images of each of `classes` classes."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = Path(root) / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            stripe_image(label, rng, size, classes).save(folder / f"img_{i:03d}.png")
    return Path(root)
