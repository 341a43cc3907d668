"""The training engine: arcface_torch's training recipe as a typed, resumable, reusable API.

* :class:`TrainConfig` -- arcface_torch's config fields, typed and validated;
* :func:`train` -- the loop (DDP, AMP, PartialFC margin heads, verification, best/last
  checkpoints, ``resume``), returning a :class:`TrainResult`;
* helpers for search methods with their own loops: :func:`build_backbone`, :func:`build_head`,
  :func:`build_optimizer`, :func:`param_groups`, :class:`PolynomialLRWarmup`,
  :func:`schedule_steps`, :func:`resolve_val_targets`;
* ``facenas train CONFIG`` (:mod:`.cli`) and the ``engine.train`` stage (:mod:`.stages`).
"""
from __future__ import annotations

from .config import TrainConfig, load_train_config
from .optim import PolynomialLRWarmup, build_optimizer, param_groups, schedule_steps
from .trainer import (
    TrainingDivergedError,
    TrainResult,
    build_backbone,
    build_head,
    resolve_device,
    resolve_val_targets,
    train,
)

__all__ = [
    "TrainConfig", "load_train_config", "PolynomialLRWarmup", "build_optimizer", "param_groups", "schedule_steps",
    "TrainingDivergedError", "TrainResult", "build_backbone", "build_head", "resolve_device", "resolve_val_targets",
    "train",
]
