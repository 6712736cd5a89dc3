"""The built-in default dataset: scikit-learn's handwritten digits, scattered, as an image folder.

1,797 real 8x8 scans of handwritten digits (UCI ML hand-written digits), 10 classes, which arrive
inside the scikit-learn wheel, so a fresh install trains offline. Each is drawn once into a 32x32
grey picture (``scattered_digit``): at a random size and place, in a random grey on a random grey
background (either may be the lighter), with a little pixel noise, drawn from a generator seeded
by the image's number, so every machine writes the same pictures. Unlike the digits centred at one
size, an untrained network's features tell these apart poorly: what training buys shows. They are
written once under the cache folder ($HASHPA_CACHE, else $XDG_CACHE_HOME/hashpa, else
~/.cache/hashpa) as scattered-digits/<class>/<id>.png.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from hashpa.errors import HashpaError

log = logging.getLogger(__name__)

NAME = "scattered-digits"
CLASS_NAMES = ("0_zero", "1_one", "2_two", "3_three", "4_four", "5_five", "6_six", "7_seven", "8_eight", "9_nine")
IMAGE_SIZE = 32
DIGIT_SIZES = (16, 26)  # the drawn digit's side in pixels, from the first to the last (inclusive)
MIN_CONTRAST = 67  # grey levels between the digit and its background, at least
NOISE = 6.0  # standard deviation of the pixel noise, in grey levels


def cache_dir() -> Path:
    """hashpa's cache folder: $HASHPA_CACHE, else $XDG_CACHE_HOME/hashpa or ~/.cache/hashpa; an error
    when something other than a folder is there."""
    if os.environ.get("HASHPA_CACHE"):
        folder, named = Path(os.environ["HASHPA_CACHE"]), "HASHPA_CACHE"
    else:
        folder, named = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hashpa", "the cache folder"
    if folder.exists() and not folder.is_dir():
        raise HashpaError(f"{named} ({folder}) is not a folder: point HASHPA_CACHE at a folder hashpa may write")
    return folder


def scattered_digit(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 8x8 digit (values 0-16, as scikit-learn gives them) drawn into an IMAGE_SIZE grey picture
    at a size, place, digit grey and background grey drawn from `rng`."""
    background = rng.uniform(0, 255)
    ink = rng.uniform(0, 255)
    while abs(ink - background) < MIN_CONTRAST:
        ink = rng.uniform(0, 255)
    side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
    glyph = np.asarray(Image.fromarray(np.uint8(pixels * (255 / 16))).resize((side, side), Image.BILINEAR), np.float32) / 255
    top, left = rng.integers(0, IMAGE_SIZE - side + 1, 2)
    coverage = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    coverage[top : top + side, left : left + side] = glyph
    picture = background * (1 - coverage) + ink * coverage + rng.normal(0, NOISE, coverage.shape)
    return Image.fromarray(np.uint8(np.clip(picture, 0, 255).round()), mode="L")


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
            scattered_digit(pixels, np.random.default_rng(index)).save(folder / f"{index:04d}.png")
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote the built-in dataset (%d images) to %s", len(digits.target), target)
    return target
