"""Process-group set-up for ``torchrun``: NCCL on GPU, gloo on CPU; nothing at import time.

One node or many: ``torchrun --nnodes=2 --nproc_per_node=1 --node_rank=R --rdzv-backend=c10d
--rdzv-endpoint=HOST:PORT`` on each node gives the same ``RANK`` / ``WORLD_SIZE`` environment as
``--standalone --nproc_per_node=2`` on one. Collectives and the group's store wait at most
``$FACENAS_DIST_TIMEOUT`` seconds (default 600) for a silent peer; a peer that dies (its node
killed) is reported by :func:`peer_lost` as one line naming the checkpoints to resume from.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist

from facenas.errors import ConfigError, FacenasError

log = logging.getLogger(__name__)

TIMEOUT_ENV = "FACENAS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


class PeerLostError(FacenasError):
    """Another process of the group died or stopped answering (a node killed, a network cut)."""

    exit_code = 3


def check_device(name: Any, field: str = "device") -> str:
    """``name`` if it is a device setting (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``), else a
    one-line ConfigError naming ``field``. Syntax only: a dry run (``facenas nni check``) needs no GPU."""
    text = str(name)
    if text in ("cpu", "cuda", "auto") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ConfigError(f"{field}={name!r} is not a device; use 'cpu', 'cuda', 'cuda:N' or 'auto'")


def resolve_device(name: str, field: str = "device") -> torch.device:
    """The torch device of a device setting (``"auto"``: CUDA when available); a one-line ConfigError
    naming ``field`` when it is malformed or names a CUDA device this machine does not have."""
    name = check_device(name, field)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{field}={name!r} but CUDA is not available; use {field}='cpu' or 'auto'")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{field}={name!r} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                          f"use {field}='cuda' or a lower index")
    return device


def dist_timeout() -> datetime.timedelta:
    """How long a collective or the store waits for a peer: ``$FACENAS_DIST_TIMEOUT`` seconds (default 600)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"${TIMEOUT_ENV}={text!r} is not a number of seconds, e.g. {TIMEOUT_ENV}=600") from None
    if not 1 <= seconds <= 86400:
        raise ConfigError(f"${TIMEOUT_ENV}={text!r} must be between 1 and 86400 seconds")
    return datetime.timedelta(seconds=seconds)


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
    timeout = dist_timeout()
    try:
        dist.init_process_group(backend=backend, timeout=timeout)
    except (RuntimeError, dist.DistError) as exc:
        raise PeerLostError(f"rank {rank} of {world} could not join the process group within {timeout.total_seconds():g} s "
                            f"({_first_line(exc)}); start every node's torchrun with the same --rdzv-endpoint and "
                            f"--nnodes, or raise ${TIMEOUT_ENV}") from None
    log.info("process group: backend %s, rank %d/%d (local %d), timeout %g s", backend, rank, world, local_rank,
             timeout.total_seconds())
    return DistInfo(rank, local_rank, world, created_group=True)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Destroy the group if :func:`init_distributed` created it."""
    if info.created_group and dist.is_initialized():
        dist.destroy_process_group()


def restore_buffers(module: torch.nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    """Put back this rank's resumed buffers (BatchNorm statistics) after wrapping ``module`` in DDP.

    DDP's constructor broadcasts rank 0's parameters *and buffers* to every rank; parameters are
    equal across ranks anyway, but BN statistics are per rank (``broadcast_buffers=False``), so a
    resumed rank would continue with rank 0's statistics instead of its own.
    """
    if not buffers:
        return
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name in buffers:
                buf.copy_(buffers[name].to(buf.device))


def is_peer_failure(exc: BaseException, info: DistInfo) -> bool:
    """Whether ``exc`` is a collective failing because a peer died or timed out (not a bug of this rank)."""
    if not info.distributed or isinstance(exc, FacenasError):
        return False
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("gloo", "Gloo", "NCCL", "Connection closed by peer", "Connection reset by peer"))


def peer_lost(exc: BaseException, info: DistInfo, output: str | os.PathLike, step: int | None = None) -> PeerLostError:
    """The one-line error for a peer lost mid-run: what failed, where this rank's checkpoints are, how to resume."""
    from .checkpoint import checkpoint_path, previous_checkpoint, read_global_step

    ckpt = checkpoint_path(output, info.rank, info.world_size)
    saved = [f"step {read_global_step(p)} ({p})" for p in (ckpt, previous_checkpoint(ckpt)) if Path(p).is_file()]
    where = f" at step {step}" if step is not None else ""
    have = "; this rank's checkpoints: " + ", ".join(saved) if saved else "; no checkpoint was written yet"
    return PeerLostError(
        f"rank {info.rank} of {info.world_size} lost a peer process{where} ({_first_line(exc)}): another node or "
        f"process died or stopped answering{have}. Restart every node with the same torchrun command and --resume "
        "(resume=True): the ranks continue from the newest step they all have")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
