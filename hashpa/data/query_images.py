"""Query images as users give them, turned into upright RGB PIL images: paths, PIL images, uint8
arrays and image tensors, one at a time or as a batch. Every input goes through the one conversion
of ``hashpa.data.decode`` (EXIF orientation, 16-bit, palette, mode "1", alpha), and what cannot be
an image is refused with a HashpaError saying what to change, never guessed.

Importing this module does not import torch: a tensor can only be given where torch is already
loaded, so tensors are recognised through ``sys.modules``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hashpa.data.decode import ImageError, read_rgb, to_rgb, upright_rgb
from hashpa.errors import HashpaError

FLOAT_PIXEL_SLACK = 1e-3  # rounding above 1.0 in a float image still counts as [0, 1]
WHAT_TO_GIVE = "give PIL images, file paths, uint8 arrays or image tensors"


def query_pictures(images) -> list[Image.Image]:
    """Upright RGB PIL images from one image or a sequence of them (see the module)."""
    pictures = [as_rgb(image) for image in as_sequence(images)]
    if not pictures:
        raise HashpaError("no images to embed")
    return pictures


def as_sequence(images) -> list:
    """One image -> [it]; a batch array or tensor, or any sequence -> its items."""
    if images is None:
        raise HashpaError(f"no images to embed (got None): {WHAT_TO_GIVE}")
    if isinstance(images, (str, Path)) or _is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4 and images.shape[-1] in (1, 3, 4):
            return list(images)
        raise HashpaError(f"image arrays must be channels last, [H, W, 3], [H, W] or a batch [N, H, W, 3]; got shape {images.shape}"
                          + ("; this looks channels first: transpose it to [..., H, W, C]" if images.ndim in (3, 4) and images.shape[-3] in (1, 3) else ""))
    if _is_tensor(images):
        if images.ndim == 4:
            return list(images)
        raise HashpaError(f"image tensors must be [3, H, W] or a batch [N, 3, H, W], got shape {tuple(images.shape)}")
    try:
        return list(images)
    except TypeError:
        raise HashpaError(f"cannot embed a {type(images).__name__}: {WHAT_TO_GIVE}") from None


def as_rgb(image) -> Image.Image:
    """A PIL RGB image from one input (checked: see the module)."""
    if isinstance(image, Image.Image):
        if 0 in image.size:
            raise HashpaError(f"cannot embed an empty image ({image.size[0]}x{image.size[1]} pixels)")
        try:
            return upright_rgb(image)
        except ImageError as error:
            raise HashpaError(f"cannot read the pixels of the given image: {error}") from None
    if isinstance(image, (str, Path)):
        picture = read_rgb(Path(image))
        if picture is None:
            raise HashpaError(f"cannot read the image {image}: not an image file hashpa can decode (see the warning above)")
        return picture
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise HashpaError(f"image arrays must be uint8 [H, W, 3] or [H, W], got {image.dtype} with shape {image.shape}"
                              + ("; a float array in [0, 1]: (array * 255).round().astype(np.uint8)" if image.dtype.kind == "f" else ""))
        if not _is_single_image(image):
            raise HashpaError(f"image arrays must be [H, W, 3] or [H, W] (channels last), got shape {image.shape}")
        if 0 in image.shape:
            raise HashpaError(f"cannot embed an empty image array (shape {image.shape})")
        return to_rgb(Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image))
    if _is_tensor(image):
        return to_rgb(Image.fromarray(_tensor_pixels(image)))
    raise HashpaError(f"cannot embed a {type(image).__name__}: {WHAT_TO_GIVE}")


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_single_image(image) -> bool:
    if isinstance(image, Image.Image):
        return True
    if isinstance(image, np.ndarray):
        return image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))
    return _is_tensor(image) and image.ndim == 3


def _tensor_pixels(image) -> np.ndarray:
    """uint8 [H, W] or [H, W, 3] from a [C, H, W] image tensor: uint8, or float in [0, 1] (rounded as
    torchvision's to_pil_image does: x * 255, truncated)."""
    shape = tuple(image.shape)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        hint = "; this looks channels last: permute(2, 0, 1) it" if image.ndim == 3 and image.shape[-1] in (1, 3) else ""
        raise HashpaError(f"image tensors must be [3, H, W] or [1, H, W], got shape {shape}{hint}")
    if 0 in shape:
        raise HashpaError(f"cannot embed an empty image tensor (shape {shape})")
    image = image.detach().cpu()
    if str(image.dtype) == "torch.uint8":
        pixels = image.numpy()
    elif not image.is_floating_point():
        raise HashpaError(f"image tensors must be uint8 or float in [0, 1], got {image.dtype}")
    else:
        values = image.float().numpy()
        if not np.isfinite(values).all():
            raise HashpaError("the image tensor holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 1 + FLOAT_PIXEL_SLACK:
            hint = ": divide it by 255 (or give it as uint8)" if high <= 255 and low >= 0 else ""
            raise HashpaError(f"float image tensors must hold values in [0, 1], this one goes from {low:g} to {high:g}{hint}")
        pixels = (np.clip(values, 0, 1) * 255).astype(np.uint8)
    pixels = pixels.transpose(1, 2, 0)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels
