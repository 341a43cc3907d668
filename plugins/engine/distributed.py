"""Process-group set-up for ``torchrun``: NCCL on GPU, gloo on CPU; nothing at import time."""
from __future__ import annotations

import dataclasses
import logging
import os

import torch
from torch import distributed as dist

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``...), if any.

    A process group that already exists is used as is; with no ``WORLD_SIZE`` (or 1) the run is
    a single process and no group is created (PartialFC works without one).
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_world_size())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    log.info("process group: backend %s, rank %d/%d (local %d)", backend, rank, world, local_rank)
    return DistInfo(rank, local_rank, world, created_group=True)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Destroy the group if :func:`init_distributed` created it."""
    if info.created_group and dist.is_initialized():
        dist.destroy_process_group()
