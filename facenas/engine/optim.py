"""Optimisers and the polynomial learning-rate schedule with linear warm-up (stepped per iteration).

:class:`PolynomialLRWarmup` follows arcface_torch's ``lr_scheduler.py`` in closed form, so a
resumed run gets exactly the same rates: for iteration ``i`` (0-based), warm-up ``w`` and total
``T`` iterations::

    lr_i = base * (i + 1) / w                          for i < w
    lr_i = base * (1 - (i - w) / (T - w)) ** power     for w <= i < T   (0 from T on)

(arcface_torch's recursive form gives the full base rate to the very first iteration even with
warm-up; here warm-up starts at ``base / w``.)
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from facenas.errors import ConfigError


class PolynomialLRWarmup(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up then polynomial decay to 0, evaluated in closed form per iteration.

    Args:
        optimizer: the optimiser whose param groups' ``initial_lr`` are the base rates.
        warmup_iters: iterations of linear warm-up (0 = none).
        total_iters: iterations until the rate reaches 0.
        power: decay exponent (1.0 = linear, as arcface_torch).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_iters: int, total_iters: int, power: float = 1.0,
                 last_epoch: int = -1):
        if total_iters < 1 or not 0 <= warmup_iters < total_iters:
            raise ConfigError(f"LR schedule needs 0 <= warmup_iters ({warmup_iters}) < total_iters ({total_iters})")
        self.warmup_iters = int(warmup_iters)
        self.total_iters = int(total_iters)
        self.power = float(power)
        super().__init__(optimizer, last_epoch)

    def factor(self, i: int) -> float:
        """Multiplier of the base rate at iteration ``i`` (0-based)."""
        w, t = self.warmup_iters, self.total_iters
        if i < w:
            return (i + 1) / w
        if i >= t:
            return 0.0
        return (1.0 - (i - w) / (t - w)) ** self.power

    def get_lr(self) -> list[float]:  # type: ignore[override]
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


def param_groups(model: nn.Module, head: nn.Module | None = None) -> list[dict]:
    """arcface_torch's groups: the backbone's parameters, then the head's (PartialFC) last."""
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "name": "backbone"}]
    if head is not None:
        groups.append({"params": [p for p in head.parameters() if p.requires_grad], "name": "head"})
    return groups


def build_optimizer(name: str, groups: Iterable[dict] | Iterable[torch.Tensor], lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW as arcface_torch builds them (weight decay on every parameter)."""
    groups = list(groups)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"optimizer '{name}' is not one of ['sgd', 'adamw']")


def schedule_steps(num_image: int, total_batch_size: int, num_epoch: float, warmup_epoch: float,
                   steps_per_epoch: int | None = None) -> tuple[int, int, int]:
    """``(steps_per_epoch, warmup_steps, total_steps)`` the arcface_torch way.

    arcface_torch: ``num_image // total_batch_size * num_epoch``; ``steps_per_epoch`` (the
    loader's length) is used when ``num_image`` is 0.
    """
    if num_image > 0:
        spe = num_image // total_batch_size
    elif steps_per_epoch is not None:
        spe = int(steps_per_epoch)
    else:
        raise ConfigError("num_image is 0 and the loader's length is unknown; set num_image")
    if spe < 1:
        raise ConfigError(f"num_image={num_image} is smaller than one global batch ({total_batch_size}); "
                          "lower batch_size or check num_image")
    return spe, int(spe * warmup_epoch), int(spe * num_epoch)
