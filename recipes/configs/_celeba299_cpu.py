"""The CPU-scale protocol of ``benchmarks/PROTOCOL.md`` as a TrainConfig (shared by the celeba299 recipes).

Not a recipe itself (no ``config``): each ``celeba299_<network>_cpu.py`` starts from
:func:`protocol_config` and sets only the network, as arcface_torch's recipes override its base.
"""
from __future__ import annotations

from facenas.plugins.engine import TrainConfig
from facenas.utils.paths import shared_data_dir


def protocol_config() -> TrainConfig:
    """celeba299 -> lfw at 64x64: ArcFace s=64, SGD 0.1, batch 64, 20 epochs, 60-minute cap."""
    config = TrainConfig()
    config.rec = str(shared_data_dir() / "celeba299")
    config.num_classes = 299
    config.num_image = 6284
    config.image_size = 64
    config.embedding_size = 128
    config.margin_list = (1.0, 0.5, 0.0)
    config.margin_head = "combined"
    config.sample_rate = 1.0
    config.optimizer = "sgd"
    config.lr = 0.1
    config.momentum = 0.9
    config.weight_decay = 5e-4
    config.batch_size = 64
    config.num_epoch = 20
    config.warmup_epoch = 1
    config.val_targets = ["lfw_devtest"]
    config.select_metric = "auc"  # lfw_devtest is sorted: its 10 folds are class-pure (docs/training.md)
    config.val_every_epoch = 2
    config.test_targets = ["lfw"]
    config.verbose = 100_000  # verification by epochs (val_every_epoch), not by steps
    config.frequent = 20
    config.num_workers = 1
    config.threads = 2
    config.max_minutes = 60.0
    return config
