"""A small CNN for CPU tests and the built-in demo: four conv-BN-ReLU blocks."""

from __future__ import annotations

from torch import nn

NUM_FEATURES = 256


class SmallCNN(nn.Module):
    """Images [B, 3, H, W] -> feature map [B, 256, H/8, W/8]; ~0.4M parameters."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, NUM_FEATURES)):
        super().__init__()
        layers, cin = [], 3
        for i, cout in enumerate(widths):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)
