"""The built-in default dataset: scikit-learn's handwritten digits as an image folder.

1,797 real 8x8 scans of handwritten digits (UCI ML hand-written digits), 10 classes, which arrive
inside the scikit-learn wheel, so a fresh install trains offline. They are written once, upscaled
to 32x32 grey PNGs, under the cache folder ($HASHPA_CACHE, else $XDG_CACHE_HOME/hashpa, else
~/.cache/hashpa) as digits/<class>/<id>.png.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

NAME = "digits"
CLASS_NAMES = ("0_zero", "1_one", "2_two", "3_three", "4_four", "5_five", "6_six", "7_seven", "8_eight", "9_nine")
IMAGE_SIZE = 32


def cache_dir() -> Path:
    if os.environ.get("HASHPA_CACHE"):
        return Path(os.environ["HASHPA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hashpa"


def builtin_dataset() -> Path:
    """The folder of the built-in dataset, written on first use (atomically: a complete folder or none)."""
    target = cache_dir() / NAME
    if target.is_dir():
        return target
    from sklearn.datasets import load_digits

    digits = load_digits()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{NAME}.", dir=target.parent))
    try:
        for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
            folder = staging / CLASS_NAMES[label]
            folder.mkdir(exist_ok=True)
            grey = Image.fromarray(np.uint8(pixels * (255 / 16)), mode="L")
            grey.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).save(folder / f"{index:04d}.png")
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote the built-in dataset (%d images) to %s", len(digits.target), target)
    return target
