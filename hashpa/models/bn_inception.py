"""BN-Inception (Ioffe & Szegedy, "Batch Normalization", ICML 2015): the Proxy Anchor paper's backbone.

Layer names follow the widely used Caffe-converted ImageNet weights (``conv1_7x7_s2``,
``inception_3a_1x1_bn``, ...), so their state_dict loads as it is. Those weights expect BGR input in
[0, 255] minus the mean (104, 117, 128); ``hashpa.models.backbones`` sets that preprocessing.
"""

from __future__ import annotations

import torch
from torch import nn

# name: (in, 1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool kind, pool proj, stride)
# 1x1 = 0 and pool proj = 0 mark the stride-2 "pass through" blocks of the paper's Table 1.
_BLOCKS = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 320, 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 608, 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128, 1),
)
NUM_FEATURES = 1024


class BNInception(nn.Module):
    """Images [B, 3, H, W] -> feature map [B, 1024, H/32, W/32]."""

    def __init__(self):
        super().__init__()
        self._conv("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3, padding=1)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, cin, c1, c3r, c3, cdr, cd, pool, proj, stride in _BLOCKS:
            prefix = f"inception_{name}"
            if c1:
                self._conv(f"{prefix}_1x1", cin, c1, 1)
            self._conv(f"{prefix}_3x3_reduce", cin, c3r, 1)
            self._conv(f"{prefix}_3x3", c3r, c3, 3, stride=stride, padding=1)
            self._conv(f"{prefix}_double_3x3_reduce", cin, cdr, 1)
            self._conv(f"{prefix}_double_3x3_1", cdr, cd, 3, padding=1)
            self._conv(f"{prefix}_double_3x3_2", cd, cd, 3, stride=stride, padding=1)
            pool_stride, pool_padding = (2, 0) if stride == 2 else (1, 1)
            if pool == "avg":
                layer = nn.AvgPool2d(3, stride=pool_stride, padding=pool_padding, ceil_mode=True, count_include_pad=True)
            else:
                layer = nn.MaxPool2d(3, stride=pool_stride, padding=pool_padding, ceil_mode=True)
            self.add_module(f"{prefix}_pool", layer)
            if proj:
                self._conv(f"{prefix}_pool_proj", cin, proj, 1)

    def _conv(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        self.add_module(name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))

    def _conv_bn_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        conv, bn = getattr(self, name), getattr(self, f"{name}_bn")
        return torch.relu(bn(conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1_3x3_s2(self._conv_bn_relu("conv1_7x7_s2", x))
        x = self._conv_bn_relu("conv2_3x3", self._conv_bn_relu("conv2_3x3_reduce", x))
        x = self.pool2_3x3_s2(x)
        for name, _, c1, _, _, _, _, _, proj, _ in _BLOCKS:
            prefix = f"inception_{name}"
            branches = []
            if c1:
                branches.append(self._conv_bn_relu(f"{prefix}_1x1", x))
            branches.append(self._conv_bn_relu(f"{prefix}_3x3", self._conv_bn_relu(f"{prefix}_3x3_reduce", x)))
            double = self._conv_bn_relu(f"{prefix}_double_3x3_reduce", x)
            branches.append(self._conv_bn_relu(f"{prefix}_double_3x3_2", self._conv_bn_relu(f"{prefix}_double_3x3_1", double)))
            pooled = getattr(self, f"{prefix}_pool")(x)
            branches.append(self._conv_bn_relu(f"{prefix}_pool_proj", pooled) if proj else pooled)
            x = torch.cat(branches, dim=1)
        return x
