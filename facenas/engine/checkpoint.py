"""Training-state checkpoints (``facenas.train/1``): everything a killed run needs to continue.

One file per rank (``checkpoint.pt`` for a single process, ``checkpoint_rank<r>.pt`` under
DDP, each holding that rank's PartialFC shard), written atomically, loadable with
``torch.load(weights_only=True)``::

    {"format": "facenas.train/1", "network": {...}, "backbone": state_dict, "head": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": ..., "epoch": e, "step_in_epoch": k,
     "global_step": n, "rng": {...}, "best": {...}, "train_seconds": t, "world_size": w,
     "config": {...}}

``rng`` holds torch's CPU (and CUDA) generator, numpy's and Python's state at the moment of the
checkpoint, plus the torch state (and the loader's generator) captured when the current
epoch's data iterator was created, so the resumed run re-creates that iterator, skips the
batches already used and continues with exactly the same data and random numbers.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facenas.errors import ConfigError, DataFormatError
from facenas.utils.io import atomic_torch_save

#: Format tag of training-state checkpoints.
TRAIN_FORMAT = "facenas.train/1"


def read_model_file(path: str | os.PathLike) -> Any:
    """``torch.load`` a checkpoint safely (``weights_only``), with a clear error when unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFormatError(path, "no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        # torch's weights_only refusal spans many lines (its advice on allow-listing globals): keep the first
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise DataFormatError(path, f"not a readable PyTorch checkpoint, or one that holds more than tensors and "
                                    f"plain containers ({type(exc).__name__}: {first})",
                              "give a facenas model file, an arcface_torch model.pt, or an .onnx file") from None


def checkpoint_path(output: str | os.PathLike, rank: int, world_size: int) -> Path:
    name = "checkpoint.pt" if world_size == 1 else f"checkpoint_rank{rank}.pt"
    return Path(output) / name


def capture_rng() -> dict[str, Any]:
    """Torch (CPU, CUDA), numpy (legacy global) and Python ``random`` states as plain containers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where a DDP rank keeps its checkpoint before the last one (``checkpoint_rank<r>.prev.pt``)."""
    p = Path(path)
    return p.with_name(p.stem + ".prev" + p.suffix)


def save_train_state(path: str | os.PathLike, record: dict[str, Any], keep_previous: bool = False) -> None:
    """Write the state atomically; with ``keep_previous`` the file it replaces becomes :func:`previous_checkpoint`.

    DDP ranks write their checkpoints one after the other: a node killed in between leaves the
    ranks one checkpoint apart. Keeping the one before lets :func:`agreed_checkpoint` find a step
    every rank has.
    """
    save_rank_state({"format": TRAIN_FORMAT, **record}, path, keep_previous)


def save_rank_state(state: dict[str, Any], path: str | os.PathLike, keep_previous: bool) -> None:
    if keep_previous and os.path.isfile(path):
        os.replace(path, previous_checkpoint(path))
    atomic_torch_save(state, path)


def read_global_step(path: str | os.PathLike) -> int | None:
    """The ``global_step`` a checkpoint holds, or None when it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return int(state["global_step"])
    except Exception:  # noqa: BLE001 - an unreadable file is simply not a candidate
        return None


def agreed_checkpoint(path: str | os.PathLike, dist_info: Any) -> Path:
    """The file (``path`` or its previous one) holding the newest step that every rank has.

    A single process resumes from ``path``. Under DDP the ranks exchange the steps of their two
    checkpoints and all pick the newest common one; none in common is a one-line error.
    """
    path = Path(path)
    if not dist_info.distributed:
        return path
    from torch import distributed as dist

    mine = {}
    for candidate in (path, previous_checkpoint(path)):
        if candidate.is_file():
            step = read_global_step(candidate)
            if step is not None:
                mine.setdefault(step, str(candidate))
    gathered: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(gathered, sorted(mine))
    common = set(gathered[0]).intersection(*map(set, gathered[1:]))
    if not common:
        have = ", ".join(f"rank {r}: {steps or 'none'}" for r, steps in enumerate(gathered))
        raise ConfigError(f"resume=True but the ranks have no checkpoint step in common ({have}) in {path.parent}; "
                          "train again without --resume")
    step = max(common)
    if step != max(mine):
        import logging

        logging.getLogger(__name__).warning("rank %d resumes from its previous checkpoint (step %d): not every rank "
                                            "has step %d", dist_info.rank, step, max(mine))
    return Path(mine[step])
