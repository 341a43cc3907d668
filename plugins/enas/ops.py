"""The operations of the ENAS face search space (Zhu 2019, Sec. 3.1, Figs. 2 and 3).

* node operations (Fig. 2): 3x3 and 5x5 depthwise-separable convolution -- a 1x1 convolution,
  an NxN depthwise convolution, batch normalisation and ReLU in series -- and 3x3 average / max
  pooling, each behind a 1x1 convolution (+ BN + ReLU, as ENAS's pooling branches) that fixes
  the channels. All keep the input shape (stride 1), so any op fits any node.
* the fixed nonlinear module on skip connections (Fig. 3a): ReLU, 1x1 convolution, BN.
* the factorized-reduction module (Fig. 3b): halves height and width and doubles the channels
  with two paths -- a stride-2 subsampling + 1x1 conv, and the same on the image shifted by one
  pixel towards the lower right (padding, then the lower-right crop) -- concatenated, then BN.
* the stem (Sec. 4.2.2): a 3x3 convolution followed by BN; the embedding head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Node operation names, in the order the controller's softmax uses.
OPS: tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")


class SepConv(nn.Sequential):
    """Depthwise-separable convolution of Fig. 2: 1x1 conv, NxN depthwise conv, BN, ReLU.

    Args:
        channels: input = output channels.
        kernel_size: N of the depthwise convolution (odd).
    """

    def __init__(self, channels: int, kernel_size: int):
        super().__init__(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
        )


class PoolOp(nn.Module):
    """3x3 average or max pooling (stride 1) behind a 1x1 conv + BN + ReLU (Fig. 2's pooling block).

    Average pooling ignores the zero padding (``count_include_pad=False``), as TensorFlow's
    ``SAME`` pooling in ENAS does.
    """

    def __init__(self, channels: int, kind: str):
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"pooling kind must be 'avg' or 'max', got {kind!r}")
        self.kind = kind
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        if self.kind == "avg":
            return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return F.max_pool2d(x, 3, stride=1, padding=1)


def make_op(name: str, channels: int) -> nn.Module:
    """The node operation ``name`` (one of :data:`OPS`) for ``channels`` channels."""
    if name == "sep_conv_3x3":
        return SepConv(channels, 3)
    if name == "sep_conv_5x5":
        return SepConv(channels, 5)
    if name == "avg_pool_3x3":
        return PoolOp(channels, "avg")
    if name == "max_pool_3x3":
        return PoolOp(channels, "max")
    raise ValueError(f"unknown ENAS operation {name!r}; known: {list(OPS)}")


class NonLinear(nn.Sequential):
    """The fixed nonlinear module of Fig. 3a on every skip connection: ReLU, 1x1 conv, BN."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class FactorizedReduction(nn.Module):
    """Fig. 3b: halve height and width, ``in_channels`` -> ``out_channels`` (twice, in the paper).

    Path 1 subsamples with stride 2 (average pooling with a 1x1 window, as ENAS) and applies a
    1x1 conv to half the output channels; path 2 does the same on the input padded by one pixel
    and cropped to its lower-right part (a one-pixel shift), so the two paths see complementary
    pixels. The concatenation is batch-normalised.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half = out_channels // 2
        self.path1 = nn.Conv2d(in_channels, half, 1, bias=False)
        self.path2 = nn.Conv2d(in_channels, out_channels - half, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.avg_pool2d(x, 1, stride=2)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        b = F.avg_pool2d(shifted, 1, stride=2)
        return self.bn(torch.cat([self.path1(a), self.path2(b)], dim=1))


class Stem(nn.Sequential):
    """Sec. 4.2.2: a 3x3 convolution (stride ``stride``) followed by batch normalisation."""

    def __init__(self, out_channels: int, stride: int):
        super().__init__(
            nn.Conv2d(3, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class EmbeddingHead(nn.Module):
    """Feature map -> face embedding, as arcface_torch's IResNet output: BN, flatten, FC, BN1d.

    The paper ends with DropBlock and a fully connected layer; ``dropout`` (plain dropout before
    the FC, default off) stands in for DropBlock.
    """

    def __init__(self, channels: int, height: int, width: int, embedding_size: int, dropout: float = 0.0):
        super().__init__()
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels * height * width, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))
