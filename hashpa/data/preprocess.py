"""How a backbone wants its images (``Preprocessing``), and the test transform in PIL and numpy
alone: resize the short side to input_size / crop_pct with the backbone's interpolation,
centre-crop, scale to the backbone's range and normalise. The same arithmetic as torchvision's
Resize, CenterCrop, ToTensor and Normalize (tested equal), without importing torchvision or torch:
the ONNX query path runs it without either."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images are turned into the backbone's input tensors."""

    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_range: float = 1.0  # pixel values are scaled to [0, input_range] before mean/std
    bgr: bool = False
    interpolation: str = "bilinear"  # resizing: bilinear or bicubic
    crop_pct: float = 0.875  # the test transform resizes the short side to input_size / crop_pct, then centre-crops

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        """A saved preprocessing; fields it predates keep their defaults (what its model was trained with)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})


PIL_INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST,
                   "lanczos": Image.Resampling.LANCZOS}


def test_resize(preprocessing: Preprocessing) -> int:
    """The short side before the centre crop: input_size / crop_pct (256 for a 224 crop at 0.875)."""
    return round(preprocessing.input_size / preprocessing.crop_pct)


def same_test_input(a: Preprocessing, b: Preprocessing) -> bool:
    """Whether two preprocessings give every image the same test-time input (crop_pct matters only
    through the resize it gives)."""
    return test_resize(a) == test_resize(b) and dataclasses.replace(a, crop_pct=1.0) == dataclasses.replace(b, crop_pct=1.0)


def test_pixels(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """RGB PIL image -> float32 [3, input_size, input_size], the backbone's test-time input."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    resize = test_resize(preprocessing)
    new_long = int(resize * long / short)
    size = (resize, new_long) if width <= height else (new_long, resize)
    if size != (width, height):
        image = image.resize(size, PIL_INTERPOLATIONS[preprocessing.interpolation])
    crop = preprocessing.input_size
    top, left = int(round((size[1] - crop) / 2.0)), int(round((size[0] - crop) / 2.0))
    x = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    if preprocessing.bgr:
        x = x[::-1]
    mean = np.asarray(preprocessing.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(preprocessing.std, np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((x * np.float32(preprocessing.input_range) - mean) / std, dtype=np.float32)


class TestTransform:
    """RGB PIL image -> float tensor [3, input_size, input_size] (``test_pixels``, as a torch tensor)."""

    def __init__(self, preprocessing: Preprocessing):
        self.preprocessing = preprocessing

    def __call__(self, image: Image.Image):
        import torch

        return torch.from_numpy(test_pixels(image, self.preprocessing))
