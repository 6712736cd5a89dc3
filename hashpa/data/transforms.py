"""Image transforms: the paper's train and test transforms, sized to the backbone's input."""

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


def test_resize(size: int) -> int:
    """Resize before the center crop: 256 for a 224 crop, in proportion for other sizes."""
    return round(size * 256 / 224)


def train_transform(
    preprocessing: Preprocessing, size: int, crop_scale: tuple[float, float] = (0.08, 1.0), hflip: bool = True
) -> T.Compose:
    steps = [T.RandomResizedCrop(size, scale=crop_scale)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), ToBackboneRange(preprocessing)])


def test_transform(preprocessing: Preprocessing, size: int) -> T.Compose:
    return T.Compose([T.Resize(test_resize(size)), T.CenterCrop(size), T.ToTensor(), ToBackboneRange(preprocessing)])
