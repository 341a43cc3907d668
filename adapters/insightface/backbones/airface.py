"""The AirFace backbone: a deeper MobileFaceNet with CBAM attention gated by ``1 + tanh``.

AirFace ("AirFace: Lightweight and Efficient Model for Face Recognition", Sec. 3.2, Table 1):
MobileNetV2-style inverted residual bottlenecks with small expansion factors and PReLU, wider at
the start than MobileNetV2 and doubling the channels at the last down-sampling, a CBAM module
(Woo et al. 2018) in *every* bottleneck whose final activation is ``1 + tanh`` instead of the
sigmoid (a weight in (0, 2): > 1 enhances, < 1 suppresses), then a 1x1 conv to 1024 channels,
a 7x7 global depthwise conv and a linear 1x1 conv to the embedding.

Table 1 (input 112x112x3; t = expansion, c = channels, n = repeats, s = stride)::

    conv 3x3           -  64  1  2
    depthwise 3x3      -  64  1  1
    bottleneck         2  64  1  2
    bottleneck         2  64  9  1
    bottleneck         4 128  1  2
    bottleneck         2 128 16  1
    bottleneck         8 256  1  2
    bottleneck         2 256  6  1
    conv 1x1           - 1024 1  1
    linear GDConv 7x7  - 1024 1  1
    linear conv 1x1    -  512 1  1

The paper does not give CBAM's reduction ratio or where CBAM sits in the bottleneck; we use
CBAM's defaults (ratio 16, 7x7 spatial kernel) applied to the projected output before the
residual addition, as CBAM does for ResNet blocks. ``width_mult``, ``depth_mult`` and
``input_size`` give narrower / shallower / smaller variants for CPU-scale training.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import nn

from facenas.errors import ConfigError

from .iresnet import scaled_width
from .mobilefacenet import feature_map_size

#: (expansion t, channels c, repeats n, stride s) of the bottleneck rows of Table 1
AIRFACE_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 1, 2),
    (2, 64, 9, 1),
    (4, 128, 1, 2),
    (2, 128, 16, 1),
    (8, 256, 1, 2),
    (2, 256, 6, 1),
)


class OnePlusTanh(nn.Module):
    """``1 + tanh(x)``: AirFace's replacement for CBAM's sigmoid gate (range (0, 2))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + torch.tanh(x)


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared MLP on avg- and max-pooled features, summed, gated."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.gate = OnePlusTanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return x * self.gate(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: 7x7 conv + BN over the channel-wise mean and max maps, gated.

    The BatchNorm is CBAM's (its reference spatial gate is a conv with BN, no activation). Without
    it the gate's logits follow the scale of the feature maps: in a CPU-scale run they drifted to
    about -27, ``1 + tanh`` saturated at 0, the first (non-residual) block's output was zero for
    every input and the network never trained (LFW 0.5, identical embeddings).
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)
        self.gate = OnePlusTanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.bn(self.conv(maps)))


class CBAM(nn.Module):
    """Channel then spatial attention (Woo et al. 2018, Sec. 3) with ``1 + tanh`` gates."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def _conv_bn(in_c: int, out_c: int, kernel: int | tuple[int, int], stride: int = 1, groups: int = 1,
             act: bool = True, same_padding: bool = True) -> nn.Sequential:
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    pad = (k[0] // 2, k[1] // 2) if same_padding else (0, 0)
    layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, k, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(out_c)]
    if act:
        layers.append(nn.PReLU(out_c))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual with CBAM: 1x1 expand - 3x3 depthwise - 1x1 linear - CBAM (+ identity)."""

    def __init__(self, in_c: int, out_c: int, expansion: int, stride: int, reduction: int = 16):
        super().__init__()
        hidden = in_c * expansion
        self.expand = _conv_bn(in_c, hidden, 1)
        self.depthwise = _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = _conv_bn(hidden, out_c, 1, act=False)
        self.cbam = CBAM(out_c, reduction)
        self.residual = stride == 1 and in_c == out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.cbam(self.project(self.depthwise(self.expand(x))))
        return x + out if self.residual else out


class AirFaceNet(nn.Module):
    """AirFace backbone (Table 1).

    Args:
        num_features: embedding size (512 in the paper; 128 for the Li-ArcFace ablation).
        width_mult: multiplies every channel count (1.0 = Table 1).
        depth_mult: multiplies the repeats of the residual rows (n = 9, 16, 6), at least 1 each.
        input_size: input height/width; the GDConv kernel covers the final map.
        head_channels: channels of the 1x1 conv before the GDConv (1024 in Table 1).
        reduction: CBAM channel-MLP reduction ratio.
        fp16: run the trunk under CUDA autocast; ignored on CPU.
    """

    def __init__(self, num_features: int = 512, width_mult: float = 1.0, depth_mult: float = 1.0,
                 input_size: int | Sequence[int] = 112, head_channels: int = 1024, reduction: int = 16,
                 fp16: bool = False, dropout: float = 0.0):
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise ConfigError(f"AirFace width_mult={width_mult} and depth_mult={depth_mult} must be > 0")
        self.fp16 = fp16
        self.input_size = feature_map_size(input_size, 0)

        def c(n: int) -> int:
            return scaled_width(n, width_mult)

        stem = c(64)
        self.stem = nn.Sequential(_conv_bn(3, stem, 3, 2), _conv_bn(stem, stem, 3, 1, groups=stem))
        blocks: list[nn.Module] = []
        in_c = stem
        for t, ch, n, s in AIRFACE_STAGES:
            repeats = n if s == 2 else max(1, int(math.ceil(n * depth_mult)))
            for i in range(repeats):
                blocks.append(Bottleneck(in_c, c(ch), t, s if i == 0 else 1, reduction))
                in_c = c(ch)
        self.blocks = nn.Sequential(*blocks)
        head = c(head_channels)
        self.conv_head = _conv_bn(in_c, head, 1)
        self.gdc = _conv_bn(head, head, feature_map_size(input_size, 4), groups=head, act=False, same_padding=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.embedding = nn.Conv2d(head, num_features, 1, bias=False)
        self.features = nn.BatchNorm1d(num_features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.autocast("cuda", enabled=self.fp16) if x.is_cuda else contextlib.nullcontext()
        with amp:
            x = self.conv_head(self.blocks(self.stem(x)))
        x = self.gdc(x.float() if self.fp16 else x)
        x = self.embedding(self.dropout(x))
        return self.features(torch.flatten(x, 1))
