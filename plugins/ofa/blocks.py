"""Inverted-residual (MBConv) blocks, static and elastic, and the embedding heads.

The static :class:`MBConv` and the elastic :class:`ElasticMBConv` have the same child names
(``expand``, ``depthwise``, ``project``), so an extracted subnet's state dict reads like the
supernet's. MobileNetV3's block (Howard et al. 2019, Sec. 5.1; OFA's ``MBConvLayer``): 1x1
expansion + BN + activation (absent when the expand ratio is 1), kxk depthwise + BN +
activation (+ SE), 1x1 linear projection + BN, identity shortcut when stride is 1 and the widths
match.

Heads map the last feature map to the embedding:

* ``conv`` -- the paper's head (OFA's ``final_expand_layer`` + global average pooling +
  ``feature_mix_layer``): 1x1 conv + BN + h-swish to a wide map, pooling, 1x1 conv + h-swish to
  ``embedding_size`` (Savchenko et al. Sec. IV-B: the 1536-d descriptor of the w1.2 supernet);
* ``gdc`` -- MobileFaceNet's global depthwise convolution (arcface_torch's ``GDC``) after the
  same 1x1 expansion: depthwise conv over the whole map + BN, linear, BN1d.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .ops import (
    ElasticBatchNorm2d,
    ElasticDepthwiseConv2d,
    ElasticPointwiseConv2d,
    ElasticSqueezeExcite,
    SqueezeExcite,
    build_activation,
    copy_bn,
    middle_channels,
)

HEADS = ("conv", "gdc")


@dataclasses.dataclass(frozen=True)
class MBConvSpec:
    """Everything that defines a static inverted-residual block (and its latency)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    expand_ratio: float
    stride: int
    activation: str
    use_se: bool

    @property
    def mid_channels(self) -> int:
        return self.in_channels if self.expand_ratio == 1 else middle_channels(self.in_channels, self.expand_ratio)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


class ConvBNAct(nn.Module):
    """Conv (no bias) + BN + activation (``conv`` / ``bn`` / ``act``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 activation: str = "hswish"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = build_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """A static inverted-residual block built from an :class:`MBConvSpec`."""

    def __init__(self, spec: MBConvSpec):
        super().__init__()
        self.spec = spec
        mid = spec.mid_channels
        if spec.expand_ratio != 1:
            self.expand = nn.Sequential()
            self.expand.add_module("conv", nn.Conv2d(spec.in_channels, mid, 1, bias=False))
            self.expand.add_module("bn", nn.BatchNorm2d(mid))
            self.expand.add_module("act", build_activation(spec.activation))
        else:
            self.expand = None
        self.depthwise = nn.Sequential()
        self.depthwise.add_module("conv", nn.Conv2d(mid, mid, spec.kernel_size, spec.stride, spec.kernel_size // 2,
                                                    groups=mid, bias=False))
        self.depthwise.add_module("bn", nn.BatchNorm2d(mid))
        self.depthwise.add_module("act", build_activation(spec.activation))
        if spec.use_se:
            self.depthwise.add_module("se", SqueezeExcite(mid))
        self.project = nn.Sequential()
        self.project.add_module("conv", nn.Conv2d(mid, spec.out_channels, 1, bias=False))
        self.project.add_module("bn", nn.BatchNorm2d(spec.out_channels))
        self.residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


class ElasticMBConv(nn.Module):
    """An inverted-residual block with elastic kernel size and expand ratio.

    Args:
        in_channels, out_channels: fixed widths (OFA's stage widths do not change with the sample).
        kernel_sizes, expand_ratios: candidates; the largest are allocated.
        stride, activation, use_se: as in :class:`MBConvSpec`.

    The active configuration is ``active_kernel_size`` / ``active_expand_ratio`` (set by the
    supernet before a forward pass).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...],
                 expand_ratios: tuple[float, ...], stride: int, activation: str, use_se: bool):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.expand_ratios = tuple(sorted(expand_ratios))
        if self.expand_ratios[0] == 1:
            raise ValueError("elastic blocks need expand ratios > 1 (a ratio of 1 has no expansion layer)")
        self.stride, self.activation, self.use_se = int(stride), activation, bool(use_se)
        max_mid = middle_channels(self.in_channels, self.expand_ratios[-1])
        self.expand = nn.Sequential()
        self.expand.add_module("conv", ElasticPointwiseConv2d(self.in_channels, max_mid))
        self.expand.add_module("bn", ElasticBatchNorm2d(max_mid))
        self.expand.add_module("act", build_activation(activation))
        self.depthwise = nn.Sequential()
        self.depthwise.add_module("conv", ElasticDepthwiseConv2d(max_mid, self.kernel_sizes, self.stride))
        self.depthwise.add_module("bn", ElasticBatchNorm2d(max_mid))
        self.depthwise.add_module("act", build_activation(activation))
        if self.use_se:
            self.depthwise.add_module("se", ElasticSqueezeExcite(max_mid))
        self.project = nn.Sequential()
        self.project.add_module("conv", ElasticPointwiseConv2d(max_mid, self.out_channels))
        self.project.add_module("bn", nn.BatchNorm2d(self.out_channels))
        self.residual = self.stride == 1 and self.in_channels == self.out_channels
        self.active_kernel_size = self.kernel_sizes[-1]
        self.active_expand_ratio = self.expand_ratios[-1]

    def active_spec(self) -> MBConvSpec:
        return MBConvSpec(self.in_channels, self.out_channels, self.active_kernel_size, self.active_expand_ratio,
                          self.stride, self.activation, self.use_se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = middle_channels(self.in_channels, self.active_expand_ratio)
        out = self.expand.act(self.expand.bn(self.expand.conv(x, mid)))
        d = self.depthwise
        out = d.act(d.bn(d.conv(out, self.active_kernel_size)))
        if self.use_se:
            out = d.se(out)
        out = self.project.bn(self.project.conv(out, self.out_channels))
        return out + x if self.residual else out

    @torch.no_grad()
    def get_active_subnet(self) -> MBConv:
        """A static :class:`MBConv` of the active configuration with copied weights."""
        spec = self.active_spec()
        block = MBConv(spec).to(self.project.conv.weight.device)
        mid = spec.mid_channels
        block.expand.conv.weight.copy_(self.expand.conv.active_weight(mid, self.in_channels))
        copy_bn(block.expand.bn, self.expand.bn)
        block.depthwise.conv.weight.copy_(self.depthwise.conv.active_weight(mid, spec.kernel_size))
        copy_bn(block.depthwise.bn, self.depthwise.bn)
        if self.use_se:
            for name, tensor in self.depthwise.se.active_weights(mid).items():
                block.depthwise.se.get_parameter(name).copy_(tensor)
        block.project.conv.weight.copy_(self.project.conv.active_weight(self.out_channels, mid))
        copy_bn(block.project.bn, self.project.bn)
        return block

    @torch.no_grad()
    def sort_channels_by_importance(self) -> None:
        """Re-order the hidden channels by the L1 norm of their projection weights (OFA, Sec. 3.3).

        Before elastic-width training, so the channels every smaller expand ratio keeps are the
        most important ones. The block computes the same function afterwards.
        """
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])
        self.depthwise.conv.weight.copy_(self.depthwise.conv.weight[order])
        for bn in (self.depthwise.bn, self.expand.bn):
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(bn, name)
                t.copy_(t[order])
        self.expand.conv.weight.copy_(self.expand.conv.weight[order])
        if self.use_se:
            se = self.depthwise.se
            se.reduce.weight.copy_(se.reduce.weight[:, order])
            se.expand.weight.copy_(se.expand.weight[order])
            se.expand.bias.copy_(se.expand.bias[order])
            # the squeeze channels too, by their expansion weights
            se_order = torch.argsort(se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True)
            se.expand.weight.copy_(se.expand.weight[:, se_order])
            se.reduce.weight.copy_(se.reduce.weight[se_order])
            se.reduce.bias.copy_(se.reduce.bias[se_order])


class ConvHead(nn.Module):
    """The paper's / OFA's head: 1x1 expand + BN + h-swish (``activation``), global pooling, 1x1 conv to the
    descriptor.

    OFA's classifier network ends its ``feature_mix_layer`` with h-swish; a face embedding must not:
    a cosine-margin loss needs descriptors that can point anywhere, and after h-swish they all lie
    near the positive orthant (measured: a 10-epoch supernet trained that way verified
    ``lfw_devtest`` at AUC 0.55, chance). The descriptor is normalised by BN instead, as
    arcface_torch's backbones end (``features`` BatchNorm).
    """

    def __init__(self, in_channels: int, mid_channels: int, embedding_size: int, activation: str = "hswish"):
        super().__init__()
        self.final_expand = ConvBNAct(in_channels, mid_channels, 1, activation=activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_mix = nn.Conv2d(mid_channels, embedding_size, 1, bias=False)
        self.features = nn.BatchNorm2d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.feature_mix(self.pool(self.final_expand(x))))
        return torch.flatten(x, 1)


class GDCHead(nn.Module):
    """1x1 expand + BN + h-swish (``activation``), then MobileFaceNet's global depthwise conv to the embedding."""

    def __init__(self, in_channels: int, mid_channels: int, embedding_size: int, feature_size: tuple[int, int],
                 activation: str = "hswish"):
        super().__init__()
        from facenas.adapters.insightface.backbones.mobilefacenet import GDC

        self.final_expand = ConvBNAct(in_channels, mid_channels, 1, activation=activation)
        self.gdc = GDC(mid_channels, embedding_size, tuple(feature_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gdc(self.final_expand(x))


def build_head(kind: str, in_channels: int, mid_channels: int, embedding_size: int,
               feature_size: tuple[int, int], activation: str = "hswish") -> nn.Module:
    if kind == "conv":
        return ConvHead(in_channels, mid_channels, embedding_size, activation)
    if kind == "gdc":
        return GDCHead(in_channels, mid_channels, embedding_size, feature_size, activation)
    raise ValueError(f"head '{kind}' is not one of {list(HEADS)}")


def spec_dict(spec: MBConvSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)
