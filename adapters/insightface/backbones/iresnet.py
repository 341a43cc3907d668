"""Improved ResNet (IResNet) backbones of ArcFace, with arcface_torch's parameter names.

Duta et al., "Improved Residual Networks" as used by ArcFace (Deng et al. 2019, Sec. 3.2,
"BN-Conv-BN-PReLU-Conv-BN" residual unit). Parameter names and shapes equal those of
arcface_torch's ``backbones/iresnet.py`` at the default width and 112x112 input, so its released
``model.pt`` files load with ``strict=True`` (checked against reference data in
``tests/data/arcface_torch``).

Two extensions, both off by default: ``width_mult`` scales the stage widths (64, 128, 256, 512)
uniformly (a "narrowed IResNet" for CPU-scale training and TNAS-style students), and
``input_size`` sizes the final fully connected layer for inputs other than 112x112.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import nn

from facenas.errors import ConfigError

STAGE_WIDTHS = (64, 128, 256, 512)
DEPTHS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3),
          "r200": (6, 26, 60, 6)}


def scaled_width(width: int, width_mult: float, divisor: int = 8) -> int:
    """``width * width_mult`` rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    if width_mult == 1.0:
        return width
    return max(divisor, int(round(width * width_mult / divisor)) * divisor)


class IBasicBlock(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the (projected) identity."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """IResNet: conv3x3 stem (stride 1), four stages of stride 2, BN - dropout - FC - BN.

    Args:
        layers: number of blocks per stage (``(3, 4, 14, 3)`` for r50).
        dropout: dropout before the FC layer (arcface_torch trains with 0).
        num_features: embedding size.
        zero_init_residual: zero the second BN of each block at init.
        fp16: run the convolutions under CUDA autocast (float16); ignored on CPU.
        width_mult: multiplies the stage widths 64/128/256/512 (1.0 = reference).
        input_size: input height/width; sizes the FC layer (112 gives arcface_torch's 7x7).
    """

    def __init__(self, layers: Sequence[int], dropout: float = 0.0, num_features: int = 512,
                 zero_init_residual: bool = False, fp16: bool = False, width_mult: float = 1.0,
                 input_size: int | Sequence[int] = 112):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ConfigError(f"IResNet layers={list(layers)} must be 4 block counts >= 1")
        if width_mult <= 0:
            raise ConfigError(f"IResNet width_mult={width_mult} must be > 0")
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.fp16 = fp16
        self.input_size = (int(h), int(w))
        widths = [scaled_width(c, width_mult) for c in STAGE_WIDTHS]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(widths[0], int(layers[0]))
        self.layer2 = self._make_layer(widths[1], int(layers[1]))
        self.layer3 = self._make_layer(widths[2], int(layers[2]))
        self.layer4 = self._make_layer(widths[3], int(layers[3]))
        self.bn2 = nn.BatchNorm2d(widths[3], eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        fh, fw = h, w
        for _ in range(4):  # each stage halves with a 3x3 / stride 2 / pad 1 conv: ceil(n / 2)
            fh, fw = math.ceil(fh / 2), math.ceil(fw / 2)
        self.fc = nn.Linear(widths[3] * fh * fw, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # arcface_torch freezes the embedding BN's scale
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, 1, 2, bias=False),
            nn.BatchNorm2d(planes, eps=1e-05),
        )
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.autocast("cuda", enabled=self.fp16) if x.is_cuda else contextlib.nullcontext()
        with amp:
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = torch.flatten(self.bn2(x), 1)
            x = self.dropout(x)
        x = self.fc(x.float() if self.fp16 else x)
        return self.features(x)


def iresnet(depth: str, **kwargs) -> IResNet:
    """IResNet of arcface_torch's ``depth`` name (``"r50"``) with :class:`IResNet` kwargs."""
    if depth not in DEPTHS:
        raise ConfigError(f"unknown IResNet depth '{depth}'; known: {sorted(DEPTHS)}")
    return IResNet(DEPTHS[depth], **kwargs)
