"""The paper's training transform (random resized crop and flip), sized and resampled as the
backbone's preprocessing says (for timm backbones, timm's own configuration: e.g. bicubic). The test
transform is ``hashpa.data.preprocess``'s."""

from __future__ import annotations

import torch
from torchvision import transforms as T

from hashpa.data.preprocess import Preprocessing


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


def interpolation(preprocessing: Preprocessing) -> T.InterpolationMode:
    return T.InterpolationMode(preprocessing.interpolation)


def train_transform(preprocessing: Preprocessing, crop_scale: tuple[float, float] = (0.08, 1.0), hflip: bool = True) -> T.Compose:
    steps = [T.RandomResizedCrop(preprocessing.input_size, scale=crop_scale, interpolation=interpolation(preprocessing))]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), ToBackboneRange(preprocessing)])
