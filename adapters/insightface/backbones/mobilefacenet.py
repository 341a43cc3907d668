"""MobileFaceNet backbones (Chen et al. 2018) with arcface_torch's parameter names.

arcface_torch's ``mbf`` / ``mbf_large`` (``backbones/mobilefacenet.py``): a 3x3 stride-2 stem,
a (grouped) 3x3 conv, four groups of inverted-residual bottlenecks separated by stride-2
bottlenecks, a 1x1 conv to 512 channels and the *global depthwise convolution* (GDC, Sec. 3.2 of
MobileFaceNet) followed by a linear layer and BN to the embedding. ``blocks`` gives the number of
residual bottlenecks per group, ``scale`` the channel multiple of 64 (``mbf``: blocks
``(1, 4, 6, 2)``, scale 2; ``mbf_large``: ``(2, 8, 12, 4)``, scale 4). Names and shapes equal
arcface_torch's at the defaults (checked against ``tests/data/arcface_torch``).

Extensions, off by default: ``width_mult`` scales every channel count (stem, bottleneck hidden
widths, the 512-channel head), ``input_size`` sets the GDC kernel to the final feature map
(7x7 at 112x112 input, 4x4 at 64x64) and ``act="relu"`` puts ReLU in place of every PReLU (the
usual mobile variant: runtimes fuse ReLU into the convolution, PReLU mostly not).
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import nn

from facenas.errors import ConfigError

from .iresnet import scaled_width


#: activations a MobileFaceNet can use (``act``); PReLU is the paper's and arcface_torch's
ACTIVATIONS = ("prelu", "relu")


def activation(act: str, channels: int) -> nn.Module:
    """The activation layer ``act`` for ``channels`` channels."""
    if act == "prelu":
        return nn.PReLU(channels)
    if act == "relu":
        return nn.ReLU(inplace=True)
    raise ConfigError(f"MobileFaceNet act='{act}' is not one of {list(ACTIVATIONS)}")


class ConvBlock(nn.Module):
    """Conv - BN - PReLU (or ``act``) (``layers.0/1/2``)."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
                 act: str = "prelu"):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
            activation(act, out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv - BN without activation (``layers.0/1``)."""

    def __init__(self, in_c: int, out_c: int, kernel: int | tuple[int, int] = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``hidden`` - 3x3 depthwise (stride) - 1x1 linear project."""

    def __init__(self, in_c: int, out_c: int, hidden: int, stride: int = 1, residual: bool = False,
                 act: str = "prelu"):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, hidden, 1, act=act),
            ConvBlock(hidden, hidden, 3, stride, 1, groups=hidden, act=act),
            LinearBlock(hidden, out_c, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` residual bottlenecks of constant width."""

    def __init__(self, channels: int, num_block: int, hidden: int, act: str = "prelu"):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, hidden, 1, True, act) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the whole feature map, then linear + BN to the embedding."""

    def __init__(self, channels: int, embedding_size: int, kernel: tuple[int, int] = (7, 7)):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, kernel, groups=channels),
            nn.Flatten(),
            nn.Linear(channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def feature_map_size(input_size: int | Sequence[int], strides: int) -> tuple[int, int]:
    """Spatial size after ``strides`` 3x3 / stride 2 / pad 1 convolutions (``ceil(n / 2)`` each)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    for _ in range(strides):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return int(h), int(w)


class MobileFaceNet(nn.Module):
    """arcface_torch's MobileFaceNet.

    Args:
        fp16: run the convolution trunk under CUDA autocast; ignored on CPU.
        num_features: embedding size.
        blocks: residual bottlenecks in the four groups (the first group is a plain grouped 3x3
            conv when ``blocks[0] == 1``, as in arcface_torch).
        scale: channels are ``64 * scale`` and ``128 * scale``.
        width_mult: multiplies every channel count (1.0 = reference).
        input_size: input height/width (the GDC kernel covers the final map).
        act: ``prelu`` (reference) or ``relu`` after every conv-BN that has an activation.
    """

    def __init__(self, fp16: bool = False, num_features: int = 512, blocks: Sequence[int] = (1, 4, 6, 2),
                 scale: int = 2, width_mult: float = 1.0, input_size: int | Sequence[int] = 112, act: str = "prelu"):
        super().__init__()
        if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
            raise ConfigError(f"MobileFaceNet blocks={list(blocks)} must be 4 counts >= 1")
        if width_mult <= 0 or scale < 1:
            raise ConfigError(f"MobileFaceNet scale={scale} must be >= 1 and width_mult={width_mult} > 0")
        if act not in ACTIVATIONS:
            raise ConfigError(f"MobileFaceNet act='{act}' is not one of {list(ACTIVATIONS)}")
        self.scale = scale
        self.fp16 = fp16
        self.input_size = feature_map_size(input_size, 0)

        def c(n: int) -> int:
            return scaled_width(n, width_mult)

        c1, c2 = c(64 * scale), c(128 * scale)
        self.layers = nn.ModuleList()
        self.layers.append(ConvBlock(3, c1, 3, 2, 1, act=act))
        if blocks[0] == 1:
            self.layers.append(ConvBlock(c1, c1, 3, 1, 1, groups=math.gcd(c1, c(64)), act=act))
        else:
            self.layers.append(Residual(c1, int(blocks[0]), c(128), act))
        self.layers.extend([
            DepthWise(c1, c1, c(128), 2, act=act),
            Residual(c1, int(blocks[1]), c(128), act),
            DepthWise(c1, c2, c(256), 2, act=act),
            Residual(c2, int(blocks[2]), c(256), act),
            DepthWise(c2, c2, c(512), 2, act=act),
            Residual(c2, int(blocks[3]), c(256), act),
        ])
        self.conv_sep = ConvBlock(c2, c(512), 1, act=act)
        self.features = GDC(c(512), num_features, feature_map_size(input_size, 4))
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.autocast("cuda", enabled=self.fp16) if x.is_cuda else contextlib.nullcontext()
        with amp:
            for layer in self.layers:
                x = layer(x)
        x = self.conv_sep(x.float() if self.fp16 else x)
        return self.features(x)


def get_mbf(fp16: bool = False, num_features: int = 512, blocks: Sequence[int] = (1, 4, 6, 2), scale: int = 2,
            **kwargs) -> MobileFaceNet:
    """arcface_torch's ``mbf``."""
    return MobileFaceNet(fp16, num_features, blocks, scale, **kwargs)


def get_mbf_large(fp16: bool = False, num_features: int = 512, blocks: Sequence[int] = (2, 8, 12, 4), scale: int = 4,
                  **kwargs) -> MobileFaceNet:
    """arcface_torch's ``mbf_large``."""
    return MobileFaceNet(fp16, num_features, blocks, scale, **kwargs)
