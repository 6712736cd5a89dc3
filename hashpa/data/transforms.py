"""Image transforms: the paper's train and test transforms, sized and resampled as the backbone's
preprocessing says (for timm backbones, timm's own configuration: e.g. bicubic, crop_pct)."""

from __future__ import annotations

import torch
from torchvision import transforms as T

from hashpa.models.backbones import Preprocessing


class ToBackboneRange(torch.nn.Module):
    """[0, 1] RGB tensor -> the backbone's pixel range and channel order, then mean/std."""

    def __init__(self, preprocessing: Preprocessing):
        super().__init__()
        self.scale = preprocessing.input_range
        self.bgr = preprocessing.bgr
        self.normalize = T.Normalize(preprocessing.mean, preprocessing.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(-3)
        return self.normalize(x * self.scale)


def test_resize(preprocessing: Preprocessing) -> int:
    """The short side before the centre crop: input_size / crop_pct (256 for a 224 crop at 0.875)."""
    return round(preprocessing.input_size / preprocessing.crop_pct)


def interpolation(preprocessing: Preprocessing) -> T.InterpolationMode:
    return T.InterpolationMode(preprocessing.interpolation)


def train_transform(preprocessing: Preprocessing, crop_scale: tuple[float, float] = (0.08, 1.0), hflip: bool = True) -> T.Compose:
    steps = [T.RandomResizedCrop(preprocessing.input_size, scale=crop_scale, interpolation=interpolation(preprocessing))]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), ToBackboneRange(preprocessing)])


def test_transform(preprocessing: Preprocessing) -> T.Compose:
    return T.Compose([T.Resize(test_resize(preprocessing), interpolation=interpolation(preprocessing)), T.CenterCrop(preprocessing.input_size),
                      T.ToTensor(), ToBackboneRange(preprocessing)])
