"""Elastic operators that slice the largest weights, and small shared helpers (OFA, Sec. 3.2).

An elastic operator owns the weights of its largest configuration; a smaller configuration uses
a slice of them: the first ``c`` channels (OFA keeps the most important channels first by
re-sorting, see :func:`sort_channels_by_importance`), the centre of the largest kernel
transformed by OFA's *kernel transformation matrices* (Fig. 3 of Cai et al.: a 7x7 kernel's
centre 5x5 goes through a learned 25x25 matrix to become the 5x5 kernel, whose centre 3x3 goes
through a 9x9 matrix to become the 3x3 kernel; one matrix per layer, shared by its channels,
initialised to the identity).

Each elastic operator can hand out the active weights (``active_weight``), so a static network
built for a sample gets exactly the tensors the supernet computes with (``get_active_subnet``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: channel counts are multiples of this (MobileNetV3 / OFA)
CHANNEL_DIVISIBLE = 8
#: squeeze-and-excite reduction (MobileNetV3 / OFA)
SE_REDUCTION = 4


def make_divisible(value: float, divisor: int = CHANNEL_DIVISIBLE, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going down by more than 10%.

    The rounding MobileNetV2/V3 and OFA use for every channel count.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def middle_channels(in_channels: int, expand_ratio: float) -> int:
    """Hidden width of an inverted-residual block: ``make_divisible(round(in * e))`` (OFA)."""
    return make_divisible(round(in_channels * expand_ratio))


def se_channels(channels: int) -> int:
    """Squeeze width of an SE module on ``channels`` channels (OFA's ``SEModule``)."""
    return make_divisible(channels // SE_REDUCTION)


ACTIVATIONS = ("relu", "hswish", "none")


def build_activation(name: str) -> nn.Module:
    """``relu`` / ``hswish`` (MobileNetV3's hard swish) / ``none``."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"activation '{name}' is not one of {list(ACTIVATIONS)}")


def centre_crop(kernel_size: int, sub_kernel_size: int) -> slice:
    """The slice that takes the centre ``sub_kernel_size`` of a ``kernel_size`` kernel."""
    start = (kernel_size - sub_kernel_size) // 2
    return slice(start, start + sub_kernel_size)


# -- static squeeze-and-excite --------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: global average, 1x1 reduce (+bias), ReLU, 1x1 expand (+bias), hard sigmoid."""

    def __init__(self, channels: int, mid_channels: int | None = None):
        super().__init__()
        mid = se_channels(channels) if mid_channels is None else mid_channels
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y), inplace=True)
        y = F.hardsigmoid(self.expand(y), inplace=True)
        return x * y


# -- elastic operators ----------------------------------------------------------------------------
class ElasticDepthwiseConv2d(nn.Module):
    """Depthwise convolution with elastic kernel size and channel count.

    Args:
        max_channels: channels of the largest configuration.
        kernel_sizes: the candidate kernel sizes (odd), e.g. ``(3, 5, 7)``.
        stride: the convolution's stride.

    Parameters: ``weight`` ``(max_channels, 1, K, K)`` for the largest ``K`` and, per pair of
    consecutive candidate sizes ``K1 > K2``, ``kernel_transform_{K1}to{K2}`` ``(K2^2, K2^2)``.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int = 1):
        super().__init__()
        self.max_channels = int(max_channels)
        self.kernel_sizes = tuple(sorted(int(k) for k in kernel_sizes))
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes {self.kernel_sizes} must be odd")
        self.stride = int(stride)
        kmax = self.kernel_sizes[-1]
        self.weight = nn.Parameter(torch.empty(self.max_channels, 1, kmax, kmax))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1]):
            self.register_parameter(f"kernel_transform_{big}to{small}", nn.Parameter(torch.eye(small * small)))

    def active_weight(self, channels: int, kernel_size: int) -> torch.Tensor:
        """The ``(channels, 1, k, k)`` kernel of the active configuration (OFA's transformation)."""
        weight = self.weight[:channels]
        size = self.kernel_sizes[-1]
        if kernel_size not in self.kernel_sizes:
            raise ValueError(f"kernel size {kernel_size} is not a candidate {self.kernel_sizes}")
        # walk down the candidate sizes: crop the centre, then apply the learned matrix
        for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1]):
            if size <= kernel_size:
                break
            crop = centre_crop(big, small)
            centre = weight[:, :, crop, crop].reshape(channels, small * small)
            matrix = getattr(self, f"kernel_transform_{big}to{small}")
            weight = F.linear(centre, matrix).reshape(channels, 1, small, small)
            size = small
        return weight

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        channels = x.size(1)
        weight = self.active_weight(channels, kernel_size)
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, channels)

    def extra_repr(self) -> str:
        return f"max_channels={self.max_channels}, kernel_sizes={self.kernel_sizes}, stride={self.stride}"


class ElasticPointwiseConv2d(nn.Module):
    """1x1 convolution (no bias) whose input and output channels are the leading slices."""

    def __init__(self, max_in_channels: int, max_out_channels: int):
        super().__init__()
        self.max_in_channels = int(max_in_channels)
        self.max_out_channels = int(max_out_channels)
        self.weight = nn.Parameter(torch.empty(self.max_out_channels, self.max_in_channels, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def active_weight(self, out_channels: int, in_channels: int) -> torch.Tensor:
        return self.weight[:out_channels, :in_channels]

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(out_channels, x.size(1)))

    def extra_repr(self) -> str:
        return f"max_in_channels={self.max_in_channels}, max_out_channels={self.max_out_channels}"


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading channels of the largest one (its statistics are sliced too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.size(1)
        if channels == self.num_features:
            return super().forward(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:channels] if self.track_running_stats else None,
            self.running_var[:channels] if self.track_running_stats else None,
            self.weight[:channels],
            self.bias[:channels],
            use_batch,
            momentum,
            self.eps,
        )


class ElasticSqueezeExcite(nn.Module):
    """SE whose channel count (and squeeze width ``se_channels(c)``) follows its input."""

    def __init__(self, max_channels: int):
        super().__init__()
        self.max_channels = int(max_channels)
        mid = se_channels(self.max_channels)
        self.reduce = nn.Conv2d(self.max_channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, self.max_channels, 1, bias=True)

    def active_weights(self, channels: int) -> dict[str, torch.Tensor]:
        mid = se_channels(channels)
        return {
            "reduce.weight": self.reduce.weight[:mid, :channels],
            "reduce.bias": self.reduce.bias[:mid],
            "expand.weight": self.expand.weight[:channels, :mid],
            "expand.bias": self.expand.bias[:channels],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.active_weights(x.size(1))
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, w["reduce.weight"], w["reduce.bias"]), inplace=True)
        y = F.hardsigmoid(F.conv2d(y, w["expand.weight"], w["expand.bias"]), inplace=True)
        return x * y


def copy_bn(target: nn.BatchNorm2d, source: nn.BatchNorm2d) -> None:
    """Copy the leading ``target.num_features`` entries of ``source``'s affine and statistics."""
    n = target.num_features
    with torch.no_grad():
        target.weight.copy_(source.weight[:n])
        target.bias.copy_(source.bias[:n])
        target.running_mean.copy_(source.running_mean[:n])
        target.running_var.copy_(source.running_var[:n])
        target.num_batches_tracked.copy_(source.num_batches_tracked)
    target.eps, target.momentum = source.eps, source.momentum
