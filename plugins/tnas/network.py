"""The standalone network of a derived TNAS architecture: an IResNet with per-layer widths.

It reuses arcface_torch's IResNet as implemented in :mod:`facenas.adapters.insightface.backbones.
iresnet` -- the same residual unit (BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the
projected identity), the same stem and head, the same forward and the same parameter names
(``conv1``, ``layer2.0.conv1.weight``, ``fc``, ``features`` ...) -- and only lets every width be
set independently:

* ``stem_width``: output of the stem conv;
* ``stage_widths[s]``: the residual width of stage ``s`` -- the output of every block's second
  conv *and* of the first block's downsample conv, which are summed, so they must be equal;
* ``inner_widths[s][b]``: the output of block ``b``'s first conv (free: nothing else adds to it);
* ``len(inner_widths[s])``: the number of blocks of stage ``s``.

With the reference widths and depths it *is* arcface_torch's IResNet: the state dict has the
same keys and shapes, so an arcface_torch ``model.pt`` loads into the largest architecture.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from facenas.adapters.insightface.backbones.iresnet import IBasicBlock, IResNet


class TnasIBasicBlock(IBasicBlock):
    """IResNet's ``IBasicBlock`` whose first conv has its own output width ``mid``.

    Args:
        inplanes: input channels.
        mid: output channels of ``conv1`` (the block's inner width).
        planes: output channels of ``conv2`` (and of ``downsample``): the residual width.
        stride: stride of ``conv2`` (and of ``downsample``).
        downsample: the identity projection (first block of a stage), or None.
    """

    def __init__(self, inplanes: int, mid: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        nn.Module.__init__(self)  # same layers as IBasicBlock.__init__, with conv1 -> mid channels
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, mid, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=1e-05)
        self.prelu = nn.PReLU(mid)
        self.conv2 = nn.Conv2d(mid, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride
    # forward: IBasicBlock.forward


def downsample(inplanes: int, planes: int) -> nn.Sequential:
    """IResNet's identity projection of a stage's first block: conv1x1 stride 2 + BN."""
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-05))


def feature_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size after the four stride-2 stages (``ceil(n / 2)`` each)."""
    h, w = input_size
    for _ in range(4):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


class TnasHead(nn.Module):
    """IResNet's head as one module (``bn2`` - flatten - ``fc`` - ``features``), for latency tables."""

    def __init__(self, channels: int, spatial: tuple[int, int], embedding_size: int):
        super().__init__()
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-05)
        self.fc = nn.Linear(channels * spatial[0] * spatial[1], embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


class TnasIResNet(IResNet):
    """An IResNet with explicit per-layer widths and per-stage depths (a derived TNAS student).

    Args:
        stem_width: stem conv output channels.
        stage_widths: residual width of each of the 4 stages.
        inner_widths: per stage, the ``conv1`` width of each block (its length = the depth).
        embedding_size: embedding dimension.
        input_size: ``(H, W)`` of the input (sizes the FC layer).
        fp16: CUDA autocast for the convolutions (as IResNet).

    The forward pass is :meth:`IResNet.forward`; initialisation follows IResNet's.
    """

    def __init__(self, stem_width: int, stage_widths: Sequence[int], inner_widths: Sequence[Sequence[int]],
                 embedding_size: int = 512, input_size: tuple[int, int] = (112, 112), fp16: bool = False):
        nn.Module.__init__(self)  # IResNet.__init__ only knows uniform widths; the layers below mirror it
        if len(stage_widths) != 4 or len(inner_widths) != 4 or any(len(m) < 1 for m in inner_widths):
            raise ValueError(f"need 4 stage widths and 4 non-empty block lists, got {stage_widths}, {inner_widths}")
        self.fp16 = fp16
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.conv1 = nn.Conv2d(3, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width, eps=1e-05)
        self.prelu = nn.PReLU(stem_width)
        inplanes = stem_width
        for s, (planes, mids) in enumerate(zip(stage_widths, inner_widths)):
            blocks = [TnasIBasicBlock(inplanes, int(mids[0]), planes, 2, downsample(inplanes, planes))]
            blocks += [TnasIBasicBlock(planes, int(m), planes) for m in mids[1:]]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.dropout = nn.Dropout(p=0.0, inplace=True)
        fh, fw = feature_size(self.input_size)
        self.fc = nn.Linear(inplanes * fh * fw, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # as arcface_torch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
