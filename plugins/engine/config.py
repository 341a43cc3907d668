"""``TrainConfig``: arcface_torch's config fields, typed and validated.

Field names and defaults follow arcface_torch's ``configs/base.py`` (``network``,
``margin_list``, ``embedding_size``, ``sample_rate``, ``rec``, ``num_classes``, ``num_image``,
``num_epoch``, ``warmup_epoch``, ``batch_size``, ``lr``, ``optimizer``, ``weight_decay``,
``val_targets``, ``fp16``, ``verbose``, ``frequent``, ...), so a user's recipe reads the same;
facenas's additions come after them. A recipe is a Python module assigning ``config``::

    from facenas.plugins.engine import TrainConfig
    config = TrainConfig()
    config.network = "mbf"
    config.rec = "/train_tmp/ms1m-retinaface-t1"
    ...

A misspelt field (``config.lerning_rate = 0.1``) is an error with a suggestion; types and ranges
are checked by :meth:`TrainConfig.check`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from facenas.config import TypedConfig, load_config_module
from facenas.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")
#: verification metric that selects best.pt (see ``TrainConfig.select_metric``)
SELECT_METRICS = ("acc", "auc")


@dataclasses.dataclass
class TrainConfig(TypedConfig):
    """Training configuration (arcface_torch field names first, then facenas's additions).

    arcface_torch fields:
        network: backbone name (``r50``, ``mbf``, ``airface``...) or a facenas architecture
            description (path to JSON).
        margin_list: ``(m1, m2, m3)`` of the combined margin: ArcFace ``(1.0, 0.5, 0.0)``,
            CosFace ``(1.0, 0.0, 0.4)``.
        resume: continue from ``output``'s training checkpoint.
        overwrite: a fresh run (``resume=False``) may replace the run already in ``output``
            (else that is refused: a finished run is never overwritten silently).
        save_all_states: also keep the training state of every epoch (``epoch_<n>.pt``).
        output: output folder (default ``work_dirs/<recipe name>``).
        embedding_size: embedding dimension.
        sample_rate: PartialFC sampling rate of negative class centres.
        interclass_filtering_threshold: arcface_torch's inter-class filtering (0 = off).
        fp16: mixed precision (CUDA only).
        batch_size: images per process per step.
        optimizer: ``sgd`` or ``adamw``.
        lr, momentum, weight_decay: optimiser settings.
        verbose: verify on ``val_targets`` (and checkpoint) every this many steps.
        frequent: log the training loss every this many steps.
        dali, dali_aug: NVIDIA DALI loading (passed to the data layer).
        gradient_acc: steps of gradient accumulation per optimiser step.
        seed: random seed.
        num_workers: data-loading worker processes.
        rec: training data: a ``.rec``/``.idx`` folder, an image folder or ``"synthetic"``.
        num_classes: identities in the data (0: read from the data).
        num_image: images in the data (0: the loader's length), sets the steps per epoch.
        num_epoch: epochs.
        warmup_epoch: epochs of linear LR warm-up (fractions allowed).
        val_targets: verification sets: ``.bin`` names looked up in ``rec`` and the shared data
            folder (``lfw``, ``lfw_devtest``), or paths.
    """

    # -- arcface_torch's configs/base.py fields ------------------------------------------------
    network: str = "r50"
    margin_list: tuple[float, float, float] = (1.0, 0.5, 0.0)
    resume: bool = False
    overwrite: bool = False
    save_all_states: bool = False
    output: str | None = None
    embedding_size: int = 512
    sample_rate: float = 1.0
    interclass_filtering_threshold: float = 0.0
    fp16: bool = False
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    verbose: int = 2000
    frequent: int = 10
    dali: bool = False
    dali_aug: bool = False
    gradient_acc: int = 1
    seed: int = 2048
    num_workers: int = 2
    rec: str = ""
    num_classes: int = 0
    num_image: int = 0
    num_epoch: int = 20
    warmup_epoch: float = 0
    val_targets: list[str] = dataclasses.field(default_factory=list)

    # -- facenas additions ---------------------------------------------------------------------
    #: backbone factory kwargs beyond num_features/fp16/dropout (``width_mult``, ``input_size``...)
    network_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: margin head from ``HEADS``: combined, arcface, cosface, softmax, li_arcface
    margin_head: str = "combined"
    #: feature scale s of the margin head (arcface_torch hard-codes 64)
    margin_scale: float = 64.0
    #: gradient of the angular margin: "arcface_torch" (no_grad margin), "textbook", None = head default
    margin_grad: str | None = None
    #: label-smoothed cross-entropy epsilon (0 = off)
    label_smoothing: float = 0.0
    #: power of the polynomial LR decay (arcface_torch: 1.0, linear)
    lr_power: float = 1.0
    #: clip the backbone's gradient norm to this (arcface_torch: 5); 0 = no clipping
    clip_grad_norm: float = 5.0
    #: resize training and verification images to this square size (None: the data's 112)
    image_size: int | None = None
    #: also verify on val_targets after every this many epochs (0 = only every `verbose` steps)
    val_every_epoch: int = 1
    #: verification sets evaluated once on the final (and best) model, e.g. ["lfw"]
    test_targets: list[str] = dataclasses.field(default_factory=list)
    #: verification batch size
    val_batch_size: int = 128
    #: what keeps best.pt: the first val set's "acc" (10-fold accuracy, arcface_torch's choice) or
    #: "auc" (threshold-free; pooled over all pairs when a set's folds are class-pure, e.g. lfw_devtest)
    select_metric: str = "acc"
    #: also write the training checkpoint every this many steps (0 = at epochs and verifications)
    checkpoint_every: int = 0
    #: stop (with a checkpoint) after this many minutes of training (None = no limit)
    max_minutes: float | None = None
    #: "auto" (CUDA if available), "cpu" or "cuda"
    device: str = "auto"
    #: torch intra-op threads on the CPU (None = torch's default)
    threads: int | None = None
    #: path to a user's arcface_torch checkout to take components from (or $FACENAS_ARCFACE_TORCH)
    arcface_torch: str | None = None
    #: which arcface_torch components to use with the bridge
    arcface_torch_components: list[str] = dataclasses.field(
        default_factory=lambda: ["backbones", "losses", "partial_fc", "verification"])
    #: free-form notes stored with the results
    notes: str = ""

    def check(self, source: str) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: {field}={getattr(self, field)!r} {why}")

        if not self.network:
            raise bad("network", "is empty; name a backbone (r50, mbf, airface, ...) or an architecture JSON")
        if self.resume and self.overwrite:
            raise bad("overwrite", "with resume=True: continue the run (--resume) or replace it (--overwrite), not both")
        m1, m2, m3 = self.margin_list
        if m1 <= 0 or m2 < 0 or m3 < 0:
            raise bad("margin_list", "needs m1 > 0, m2 >= 0, m3 >= 0, e.g. (1.0, 0.5, 0.0)")
        for name in ("embedding_size", "batch_size", "num_epoch", "gradient_acc", "frequent", "verbose",
                     "val_batch_size"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        for name in ("num_classes", "num_image", "num_workers", "checkpoint_every", "val_every_epoch"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if not 0.0 < self.sample_rate <= 1.0:
            raise bad("sample_rate", "must be in (0, 1]")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"is not one of {list(OPTIMIZERS)}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError(f"{source}: need lr > 0, weight_decay >= 0, 0 <= momentum < 1 "
                              f"(got lr={self.lr}, weight_decay={self.weight_decay}, momentum={self.momentum})")
        if not 0 <= self.warmup_epoch < self.num_epoch:
            raise bad("warmup_epoch", f"must be in [0, num_epoch={self.num_epoch})")
        if self.lr_power <= 0:
            raise bad("lr_power", "must be > 0")
        if self.clip_grad_norm < 0:
            raise bad("clip_grad_norm", "must be >= 0 (0 disables clipping)")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "must be in [0, 1)")
        if self.margin_grad not in (None, "arcface_torch", "textbook"):
            raise bad("margin_grad", "must be None, 'arcface_torch' or 'textbook'")
        if self.image_size is not None and not 16 <= self.image_size <= 1024:
            raise bad("image_size", "must be None or a size in [16, 1024]")
        if self.device not in DEVICES:
            raise bad("device", f"is not one of {list(DEVICES)}")
        if self.select_metric not in SELECT_METRICS:
            raise bad("select_metric", f"is not one of {list(SELECT_METRICS)}")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be None or >= 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise bad("max_minutes", "must be None or > 0")
        if not self.rec:
            raise bad("rec", "is empty; give a .rec/.idx folder, an image folder or 'synthetic'")
        known = {"backbones", "losses", "partial_fc", "verification"}
        unknown = [c for c in self.arcface_torch_components if c not in known]
        if unknown:
            raise bad("arcface_torch_components", f"has unknown entries {unknown}; choose from {sorted(known)}")

    # -- derived values ------------------------------------------------------------------------
    def input_size(self) -> int:
        """The square input size the backbone sees (``image_size`` or the network's, default 112)."""
        if self.image_size is not None:
            return int(self.image_size)
        return int(self.network_kwargs.get("input_size", 112))

    def resolved_output(self, recipe: str | os.PathLike | None = None) -> Path:
        """``output``, or ``work_dirs/<recipe stem>`` as arcface_torch does."""
        if self.output:
            return Path(self.output)
        stem = Path(recipe).stem if recipe else "facenas_train"
        return Path("work_dirs") / stem


def load_train_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a recipe module (``config = TrainConfig()...``) and apply ``overrides`` (validated)."""
    cfg = load_config_module(path, TrainConfig)
    if overrides:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides}, source=f"{path} (overrides)")
    if not cfg.output:
        cfg.output = str(cfg.resolved_output(path))
    return cfg
