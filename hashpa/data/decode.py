"""Decoding an image file, the one way every path does it (training, indexing, queries, the device
decoder's fall-back): the pixel limit, EXIF orientation, and 16-bit and float pixels brought to
8-bit RGB."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # PIL's decompression-bomb limit (about 89 megapixels), on every path
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError, Image.DecompressionBombError)


class ImageError(Exception):
    """An image file that cannot be decoded, with the reason."""


def decode_image(source: str | Path | bytes, at_least: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image in a file (or its bytes) as an 8-bit RGB PIL image, upright as its EXIF orientation
    says. Raises ImageError (what is wrong) for anything that is not a readable image of at most
    `max_pixels` pixels (MAX_PIXELS at the most).

    With `at_least` a JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, as its format allows)
    whose short side is still at least `at_least` pixels: a fraction of the memory and time, for
    callers that shrink the picture anyway (thumbnails, a served query). `max_pixels` applies after
    that reduction."""
    with _opened(source) as image:
        if at_least and image.format == "JPEG" and min(image.size) > 2 * at_least:
            image.draft("RGB", _at_least(image.size, at_least))
        if image.size[0] * image.size[1] > max_pixels:
            raise ImageError(f"{image.size[0]} x {image.size[1]} pixels is more than the {max_pixels:,} pixels accepted here")
        return upright_rgb(image)


def _at_least(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The (width, height) of `size` scaled so that its short side is `side` (draft keeps at least that)."""
    scale = side / min(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def upright_rgb(image: Image.Image) -> Image.Image:
    """An opened PIL image (from a file or given by a caller) as 8-bit RGB, upright as its EXIF
    orientation says: the one conversion every input goes through. Raises ImageError when its pixels
    cannot be read (a truncated file) or are more than MAX_PIXELS."""
    check_pixels(image.size)
    try:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except READ_ERRORS as error:
        raise ImageError(str(error) or type(error).__name__) from None


def header_problem(path: str | Path) -> str | None:
    """Why the file at `path` cannot be an image hashpa reads, from its header alone (fast: the
    pixels are not decoded, so damage beyond the header shows only when they are); None when it can."""
    try:
        with _opened(path):
            return None
    except ImageError as error:
        return str(error)


@contextlib.contextmanager
def _opened(source: str | Path | bytes) -> Iterator[Image.Image]:
    """The opened image, its size checked against MAX_PIXELS; every reading failure inside the
    block raised as ImageError."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else None
    try:
        handle = handle or open_regular(source)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                check_pixels(image.size)
                yield image
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"more than the {MAX_PIXELS:,}-pixel limit (a decompression bomb?)") from None
    except READ_ERRORS as error:
        raise ImageError(str(error) or type(error).__name__) from None
    finally:
        if handle is not None:
            handle.close()


def open_regular(path: str | Path):
    """`path` opened for reading in binary, when it is a regular file (links followed); ImageError for a
    FIFO, a device, a socket or a folder, which are never read (a FIFO would block the reader)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise ImageError(error.strerror or str(error)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError("not a regular file (a FIFO, a device, a socket or a folder)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_pixels(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{width} x {height} pixels is more than the {MAX_PIXELS:,}-pixel limit (a decompression bomb?)")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit and 32-bit integer pixels keep their top 8 bits (of their full range), float
    pixels in [0, 1] are scaled by 255 (others by 255 / their maximum, when above 255)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.int64)
        top = 65535 if image.mode != "I" or pixels.max(initial=0) > 255 else 255
        image = Image.fromarray(np.clip(pixels * 255 // max(top, 1), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64))
        peak = pixels.max(initial=0.0)
        scale = 255.0 if 0 <= pixels.min(initial=0.0) and peak <= 1 else (255.0 / peak if peak > 255 else 1.0)
        image = Image.fromarray(np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def read_rgb(path: Path) -> Image.Image | None:
    """The image as RGB, or None (with a warning naming the file and the reason) when it cannot be read."""
    try:
        return decode_image(path)
    except ImageError as error:
        log.warning("skipping unreadable image %s (%s)", path, error)
        return None
