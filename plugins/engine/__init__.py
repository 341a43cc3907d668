"""The training engine: arcface_torch's training recipe as a typed, resumable, reusable API.

* :class:`TrainConfig` -- arcface_torch's config fields, typed and validated;
* :func:`train` -- the loop (DDP, AMP, PartialFC margin heads, verification, best/last
  checkpoints, ``resume``), returning a :class:`TrainResult`;
* helpers for search methods with their own loops: :func:`build_backbone`, :func:`build_head`,
  :func:`build_optimizer`, :func:`param_groups`, :class:`PolynomialLRWarmup`,
  :func:`schedule_steps`, :func:`resolve_val_targets`;
* ``facenas train CONFIG`` (:mod:`.cli`) and the ``engine.train`` stage (:mod:`.stages`).

Names are imported lazily, so ``import facenas.plugins.engine`` (done by the CLI to list its
commands and by recipes for ``TrainConfig``) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": ".config", "load_train_config": ".config",
    "PolynomialLRWarmup": "facenas.engine.optim", "build_optimizer": "facenas.engine.optim",
    "param_groups": "facenas.engine.optim", "schedule_steps": "facenas.engine.optim",
    "TrainingDivergedError": "facenas.engine.loop", "TrainResult": ".trainer", "build_backbone": ".trainer",
    "build_head": ".trainer", "resolve_device": "facenas.engine.distributed", "resolve_val_targets": ".trainer", "train": ".trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
