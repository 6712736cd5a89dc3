"""Shared fixtures: small generated image folders, an isolated cache folder."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)
logging.getLogger("faiss").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HASHPA_CACHE", str(tmp_path_factory.getbasetemp() / "hashpa-cache"))


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
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = root / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            stripe_image(label, rng, size, classes).save(folder / f"img_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained for one epoch (seconds): enough for indexing tests."""
    from hashpa.training import resolve_config, train

    base = tmp_path_factory.mktemp("trained")
    folder = make_image_folder(base / "images", classes=4, per_class=12)
    config = resolve_config(dict(
        data=str(folder), split="seen", epochs=1, batch_size=16, workers=0, lr=3e-3, out=str(base / "run"),
        model=dict(backbone="smallcnn", weights="none", dim=16, bits=16),
    ))
    train(config)
    return base / "run"
