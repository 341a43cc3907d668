"""Small in-memory data for engine tests (the real loaders are tested in tests/insightface)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from facenas.plugins.engine import TrainConfig


class TinyFaces(Dataset):
    """``num_classes`` identities, each a fixed random pattern plus noise; random flips from the global RNG.

    Flips use ``torch.rand`` without a generator on purpose: in worker processes that is the
    worker's seed, in the main process the global RNG -- the cases resume must reproduce.
    """

    def __init__(self, num_classes: int = 6, per_class: int = 8, size: int = 32, seed: int = 0, flip: bool = True):
        g = torch.Generator().manual_seed(seed)
        centres = torch.randn(num_classes, 3, size, size, generator=g)
        self.labels = torch.arange(num_classes).repeat_interleave(per_class)
        self.images = centres[self.labels] + 0.5 * torch.randn(len(self.labels), 3, size, size, generator=g)
        self.num_classes = num_classes
        self.flip = flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.labels[index]


def tiny_loader(batch_size: int = 8, num_workers: int = 0, seed: int = 2048, rank: int = 0, world: int = 1,
                **kwargs) -> DataLoader:
    dataset = TinyFaces(**kwargs)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True)


def tiny_config(tmp_path, **changes) -> TrainConfig:
    base = dict(network="mbf", network_kwargs={"width_mult": 0.125, "input_size": 32}, embedding_size=16,
                rec="memory", num_classes=6, batch_size=8, num_epoch=3, lr=0.05, frequent=1, verbose=1000,
                val_every_epoch=0, threads=1, output=str(tmp_path / "run"), num_workers=0, seed=7)
    base.update(changes)
    return TrainConfig.from_dict(base)


@pytest.fixture
def loader_factory():
    return tiny_loader


#: A tiny MobileFaceNet recipe over the synthetic set (format with rec, val, epochs, workers,
#: val_every, checkpoint_every): what the CLI, kill/resume and multi-node tests train.
TINY_RECIPE = """
from facenas.plugins.engine import TrainConfig
config = TrainConfig()
config.network = "mbf"
config.network_kwargs = {{"width_mult": 0.125}}
config.image_size = 32
config.embedding_size = 32
config.rec = {rec!r}
config.num_classes = 24
config.num_image = 240
config.batch_size = 16
config.num_epoch = {epochs}
config.warmup_epoch = 1
config.lr = 0.05
config.val_targets = [{val!r}]
config.val_every_epoch = {val_every}
config.frequent = 5
config.num_workers = {workers}
config.threads = 1
config.checkpoint_every = {checkpoint_every}
"""
