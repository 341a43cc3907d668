"""The static OFA face network and the elastic supernet it is extracted from.

Layout (OFA's ``OFAMobileNetV3``, Cai et al. 2020, Sec. 4 / MobileNetV3-Large): a 3x3 stride-2
conv with h-swish, a fixed first block (3x3 depthwise, expand 1), five elastic stages of up to
``max(depths)`` inverted-residual blocks (widths 24/40/80/112/160 x ``width_mult``, strides
2/2/2/1/2, ReLU in the first two stages and h-swish after, SE in stages 2, 4 and 5) and a face
embedding head (:mod:`.blocks`). Only the first block of a stage strides or changes the width,
so a stage's input and output shapes do not depend on the sample; a stage of depth ``d`` runs
its first ``d`` blocks (OFA's elastic depth keeps the first layers).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Sequence

import torch
from torch import nn

from .blocks import ConvBNAct, ElasticMBConv, MBConv, MBConvSpec, build_head


@dataclasses.dataclass(frozen=True)
class StageChoice:
    """One stage's architecture: its depth and the kernel size / expand ratio of each block."""

    depth: int
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Fixed shape of an OFA face network family (everything the sample does not choose).

    Attributes:
        input_size: ``(H, W)`` of the input.
        stem_channels: output channels of the first conv.
        first_block_channels: output channels of the fixed first block.
        stage_channels: output channels of the five elastic stages.
        first_block_stride: stride of the first block (OFA: 1).
        stage_strides: stride of each stage's first block (OFA: 2, 2, 2, 1, 2).
        stage_activations: ``relu`` / ``hswish`` per stage (the first block uses the first one).
        stage_se: SE per stage.
        first_block_activation: activation of the fixed first block (OFA: relu).
        stem_activation: activation of the first conv (OFA: hswish).
        head_activation: activation of the head's 1x1 expansion (OFA: hswish).
        head: ``conv`` or ``gdc``.
        head_channels: width of the head's 1x1 expansion (OFA's final expand layer, 960 x w).
        embedding_size: output features.
        kernel_sizes, expand_ratios, depths: the elastic candidates.
    """

    input_size: tuple[int, int]
    stem_channels: int
    first_block_channels: int
    stage_channels: tuple[int, ...]
    first_block_stride: int
    stage_strides: tuple[int, ...]
    stage_activations: tuple[str, ...]
    stage_se: tuple[bool, ...]
    first_block_activation: str
    head: str
    head_channels: int
    embedding_size: int
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    depths: tuple[int, ...]
    stem_activation: str = "hswish"
    head_activation: str = "hswish"

    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    # -- shapes -----------------------------------------------------------------------------------
    @staticmethod
    def _down(size: tuple[int, int], stride: int) -> tuple[int, int]:
        # a k x k conv with padding k // 2 and this stride: ceil(n / stride) for odd k
        return (math.ceil(size[0] / stride), math.ceil(size[1] / stride))

    def stem_output_size(self) -> tuple[int, int]:
        return self._down(self.input_size, 2)

    def stage_input_sizes(self) -> list[tuple[int, int]]:
        """Spatial size entering each stage."""
        size = self._down(self.stem_output_size(), self.first_block_stride)
        sizes = []
        for stride in self.stage_strides:
            sizes.append(size)
            size = self._down(size, stride)
        return sizes

    def final_size(self) -> tuple[int, int]:
        size = self.stage_input_sizes()[-1]
        return self._down(size, self.stage_strides[-1])

    def stage_in_channels(self, stage: int) -> int:
        return self.first_block_channels if stage == 0 else self.stage_channels[stage - 1]

    # -- blocks ---------------------------------------------------------------------------------
    def first_block_spec(self) -> MBConvSpec:
        return MBConvSpec(self.stem_channels, self.first_block_channels, 3, 1, self.first_block_stride,
                          self.first_block_activation, False)

    def block_spec(self, stage: int, position: int, kernel_size: int, expand_ratio: float) -> MBConvSpec:
        """The static block at ``position`` (0-based) of ``stage`` with this kernel / expand ratio."""
        in_c = self.stage_in_channels(stage) if position == 0 else self.stage_channels[stage]
        stride = self.stage_strides[stage] if position == 0 else 1
        return MBConvSpec(in_c, self.stage_channels[stage], int(kernel_size), expand_ratio, stride,
                          self.stage_activations[stage], self.stage_se[stage])

    def block_input_size(self, stage: int, position: int) -> tuple[int, int]:
        size = self.stage_input_sizes()[stage]
        return size if position == 0 else self._down(size, self.stage_strides[stage])

    def active_specs(self, arch: Sequence[StageChoice]) -> list[list[MBConvSpec]]:
        """The static block specs of each stage for ``arch``."""
        out = []
        for stage, choice in enumerate(arch):
            out.append([self.block_spec(stage, j, choice.kernel_sizes[j], choice.expand_ratios[j])
                        for j in range(choice.depth)])
        return out


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class OFAFaceNet(nn.Module):
    """A static subnet: ``first_conv`` -> ``first_block`` -> ``stages`` -> ``head``.

    ``stages`` is a ``ModuleList`` of ``Sequential`` stages of :class:`~.blocks.MBConv`, so
    parameter names say where a block sits (``stages.2.1.depthwise.conv.weight``).
    """

    def __init__(self, layout: Layout, arch: Sequence[StageChoice]):
        super().__init__()
        self.layout = layout
        self.arch = tuple(arch)
        self.input_size = tuple(layout.input_size)  # deployment (export, latency) reads the native resolution
        self.first_conv = ConvBNAct(3, layout.stem_channels, 3, 2, activation=layout.stem_activation)
        self.first_block = MBConv(layout.first_block_spec())
        self.stages = nn.ModuleList(nn.Sequential(*[MBConv(s) for s in specs]) for specs in layout.active_specs(arch))
        self.head = build_head(layout.head, layout.stage_channels[-1], layout.head_channels, layout.embedding_size,
                               layout.final_size(), layout.head_activation)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.first_conv(x))
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


class OFASupernet(nn.Module):
    """The elastic supernet: every stage holds ``max(depths)`` elastic blocks with the largest weights.

    Set the active subnet with :meth:`set_active` (a list of :class:`StageChoice`, one per stage)
    before calling it; :meth:`get_active_subnet` returns the static :class:`OFAFaceNet` of the
    active subnet with copied weights, whose output equals the supernet's.
    """

    def __init__(self, layout: Layout):
        super().__init__()
        self.layout = layout
        self.first_conv = ConvBNAct(3, layout.stem_channels, 3, 2, activation=layout.stem_activation)
        self.first_block = MBConv(layout.first_block_spec())
        stages = []
        for stage in range(layout.num_stages):
            blocks = []
            for j in range(layout.max_depth):
                spec = layout.block_spec(stage, j, max(layout.kernel_sizes), max(layout.expand_ratios))
                blocks.append(ElasticMBConv(spec.in_channels, spec.out_channels, layout.kernel_sizes,
                                            layout.expand_ratios, spec.stride, spec.activation, spec.use_se))
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.head = build_head(layout.head, layout.stage_channels[-1], layout.head_channels, layout.embedding_size,
                               layout.final_size(), layout.head_activation)
        _init_weights(self)
        self.active_depths = [layout.max_depth] * layout.num_stages

    # -- the active subnet --------------------------------------------------------------------------
    def set_active(self, arch: Sequence[StageChoice]) -> None:
        if len(arch) != self.layout.num_stages:
            raise ValueError(f"an architecture needs {self.layout.num_stages} stages, got {len(arch)}")
        for stage, (choice, blocks) in enumerate(zip(arch, self.stages)):
            if choice.depth not in self.layout.depths:
                raise ValueError(f"stage {stage + 1}: depth {choice.depth} is not a candidate {self.layout.depths}")
            self.active_depths[stage] = choice.depth
            for j in range(choice.depth):
                blocks[j].active_kernel_size = int(choice.kernel_sizes[j])
                blocks[j].active_expand_ratio = choice.expand_ratios[j]

    def active_arch(self) -> list[StageChoice]:
        out = []
        for depth, blocks in zip(self.active_depths, self.stages):
            out.append(StageChoice(depth, tuple(b.active_kernel_size for b in blocks[:depth]),
                                   tuple(b.active_expand_ratio for b in blocks[:depth])))
        return out

    def set_largest(self) -> None:
        kmax, emax, dmax = max(self.layout.kernel_sizes), max(self.layout.expand_ratios), self.layout.max_depth
        self.set_active([StageChoice(dmax, (kmax,) * dmax, (emax,) * dmax)] * self.layout.num_stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.first_conv(x))
        for depth, blocks in zip(self.active_depths, self.stages):
            for block in blocks[:depth]:
                x = block(x)
        return self.head(x)

    @torch.no_grad()
    def get_active_subnet(self) -> OFAFaceNet:
        """The static network of the active subnet, weights copied (BN statistics included)."""
        arch = self.active_arch()
        device = next(self.parameters()).device
        net = OFAFaceNet.__new__(OFAFaceNet)
        nn.Module.__init__(net)
        net.layout = self.layout
        net.arch = tuple(arch)
        net.input_size = tuple(self.layout.input_size)
        net.first_conv = copy.deepcopy(self.first_conv)
        net.first_block = copy.deepcopy(self.first_block)
        net.stages = nn.ModuleList(
            nn.Sequential(*[b.get_active_subnet() for b in blocks[:depth]])
            for depth, blocks in zip(self.active_depths, self.stages))
        net.head = copy.deepcopy(self.head)
        net.train(self.training)
        return net.to(device)

    @torch.no_grad()
    def sort_channels_by_importance(self) -> None:
        """Re-order every elastic block's hidden channels by importance (before elastic width)."""
        for blocks in self.stages:
            for block in blocks:
                block.sort_channels_by_importance()
