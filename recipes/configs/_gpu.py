"""arcface_torch's published GPU recipes as TrainConfigs (shared by the ``*_gpu.py`` recipes).

The dataset folder defaults to arcface_torch's (``/train_tmp/...``) and can be moved with an
environment variable, so the recipes run unchanged: ``FACENAS_MS1MV3`` (MS1MV3,
``ms1m-retinaface-t1``: 93,431 identities, 5,179,510 images) and ``FACENAS_WEBFACE4M``
(WebFace4M: 205,990 identities, 4,235,242 images). Verification sets (``lfw.bin``,
``cfp_fp.bin``, ``agedb_30.bin``) are looked up in the dataset folder, as arcface_torch does.
Launch with ``torchrun --nproc_per_node=8 -m facenas.cli train recipes/configs/<recipe>.py``;
``batch_size`` is per GPU.
"""
from __future__ import annotations

import os

from facenas.plugins.engine import TrainConfig

DATASETS = {
    "ms1mv3": ("FACENAS_MS1MV3", "/train_tmp/ms1m-retinaface-t1", 93431, 5179510),
    "wf4m": ("FACENAS_WEBFACE4M", "/train_tmp/WebFace4M", 205990, 4235242),
}


def gpu_config(dataset: str) -> TrainConfig:
    """arcface_torch's base settings for ``dataset`` (ArcFace margins for MS1MV3, CosFace for WebFace)."""
    env, default, num_classes, num_image = DATASETS[dataset]
    config = TrainConfig()
    config.rec = os.environ.get(env, default)
    config.num_classes = num_classes
    config.num_image = num_image
    config.margin_list = (1.0, 0.5, 0.0) if dataset == "ms1mv3" else (1.0, 0.0, 0.4)
    config.embedding_size = 512
    config.sample_rate = 1.0
    config.fp16 = True
    config.momentum = 0.9
    config.weight_decay = 5e-4
    config.batch_size = 128
    config.lr = 0.1
    config.verbose = 2000
    config.num_epoch = 20
    config.warmup_epoch = 0
    config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
    config.val_every_epoch = 0  # as arcface_torch: verification every `verbose` steps
    config.num_workers = 2
    return config
