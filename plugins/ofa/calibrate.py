"""BatchNorm recalibration of an extracted subnet (OFA, Sec. 3.4 / ``set_running_statistics``).

A subnet's BN running statistics inherited from the supernet were accumulated over many different
subnets; before a subnet is evaluated they are recomputed on training images: the statistics are
reset and the subnet runs forward in training mode over a fixed calibration set with a cumulative
average (``momentum=None``), which gives the mean of the batch statistics as OFA does.
"""
from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
import torch
from torch import nn

from facenas.utils.seed import make_rng

log = logging.getLogger(__name__)

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor] | torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Recompute every BN layer's running statistics of ``model`` on ``batches``; returns ``model``.

    Args:
        model: a static network (e.g. :meth:`~.network.OFASupernet.get_active_subnet`).
        batches: an iterable of image batches, or one tensor of images (split into ``batch_size``).
        batch_size: batch size used when ``batches`` is a single tensor.

    The model's training mode and BN momenta are restored afterwards.
    """
    if isinstance(batches, torch.Tensor):
        batches = torch.split(batches, batch_size)
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    saved = [(m.momentum,) for m in bns]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        n = 0
        for x in batches:
            if x.size(0) < 2:
                continue  # BN in training mode needs more than one value per channel
            model(x.to(device))
            n += 1
        if n == 0:
            raise ValueError("BN recalibration got no batch of at least 2 images")
    finally:
        for m, (momentum,) in zip(bns, saved):
            m.momentum = momentum
        model.train(was_training)
    return model


def load_calibration_images(root_dir: str, num_images: int = 512, image_size: int | None = None,
                            seed: int = 0) -> torch.Tensor:
    """``num_images`` training images (no flip) drawn with ``seed`` from a data folder / ``"synthetic"``.

    The same images are used for every subnet, so recalibrated accuracies compare.
    """
    from facenas.adapters.insightface.dataset import build_dataset

    dataset = build_dataset(root_dir, image_size=image_size, flip=False)
    rng = make_rng(seed)
    n = min(int(num_images), len(dataset))
    index = np.sort(rng.choice(len(dataset), size=n, replace=False))
    images = torch.stack([dataset[int(i)][0] for i in index])
    log.info("calibration set: %d images from %s (%s)", n, root_dir, tuple(images.shape[1:]))
    return images
