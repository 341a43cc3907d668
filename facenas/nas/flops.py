"""Counting multiply-accumulates (MACs) of a forward pass.

Face-NAS papers (MobileFaceNet's "MAdds", TNAS's and OFA's "FLOPs") report multiply-accumulates
of convolutions and fully connected layers; facenas does the same and calls the number "FLOPs"
(``mflops`` = MACs / 1e6), so figures compare with the papers. Bias additions, BN, activations
and pooling are not counted (they are < 2% for these networks).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _conv_macs(module: nn.Conv2d, out: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    per_out = (module.in_channels // module.groups) * kh * kw
    return int(out.numel() * per_out)


def _linear_macs(module: nn.Linear, out: torch.Tensor) -> int:
    return int(out.numel() * module.in_features)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 112, 112)) -> int:
    """MACs of ``model`` on one input of ``input_shape`` (counted per sample of the batch).

    Counts every ``nn.Conv2d`` and ``nn.Linear`` call (modules called twice count twice),
    including modules that subclass them, by forward hooks on a copy in eval mode.
    """
    total = 0

    def hook(module: nn.Module, _inp, out) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += _conv_macs(module, out)
        elif isinstance(module, nn.Linear):
            total += _linear_macs(module, out)

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model(torch.zeros(*input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total // int(input_shape[0])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
