"""Data for TNAS: index-aware batches with reproducible shuffling and flips, train/val splits,
and a loader for the training engine that carries teacher features to a distillation head.

Every batch is ``(images, labels, indices, flipped)``: the index of each image in its dataset and
whether it was mirrored, so the teacher's embeddings can be cached per ``(index, flipped)``. The
order and the flips of an epoch are a function of ``(seed, epoch)`` only
(:class:`EpochBatchSampler`), so a resumed search or training run sees the same batches.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from facenas.errors import ConfigError


class KeyedFaceDataset(Dataset):
    """A face dataset read at ``(index, flip)`` keys: ``(image, label, index, flipped)``.

    Args:
        source: a training folder (``.rec``/``.idx``, image folder), ``"synthetic"``, or a ``.bin``
            verification file (its images, unlabelled: label -1).
        image_size: resize to this square size (antialiased bilinear, as the data layer).
    """

    def __init__(self, source: str | os.PathLike, image_size: int | None = None):
        from facenas.adapters.insightface.dataset import build_dataset

        self.source = os.fspath(source)
        self.image_size = image_size
        if self.source.endswith(".bin"):
            from facenas.adapters.insightface.binset import load_bin

            self._images = load_bin(self.source).images
            self._base = None
            self.num_classes = None
        else:
            self._base = build_dataset(self.source, image_size=image_size, flip=False)
            self._images = None
            self.num_classes = getattr(self._base, "num_classes", None)

    def __len__(self) -> int:
        return len(self._images) if self._images is not None else len(self._base)

    def read(self, index: int) -> tuple[np.ndarray, int]:
        if self._images is not None:
            return self._images[index], -1
        return self._base.read(index)

    def __getitem__(self, key: tuple[int, int] | int):
        from facenas.adapters.insightface.dataset import to_tensor

        index, flip = (key, 0) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        img, label = self.read(index)
        x = to_tensor(img, self.image_size, flip=False)
        if flip:
            x = torch.flip(x, dims=[2])
        return x, torch.tensor(label, dtype=torch.long), torch.tensor(index), torch.tensor(flip)


class EpochBatchSampler(Sampler):
    """Batches of ``(index, flip)`` keys: a seeded permutation of ``indices`` per epoch.

    Args:
        indices: the dataset indices this sampler draws from (e.g. one split).
        batch_size: keys per batch.
        seed: base seed; epoch ``e`` uses a generator seeded with ``(seed, e)``.
        flip: mirror each image with probability 1/2 (the protocol's only augmentation).
        drop_last: drop the last incomplete batch.
    """

    def __init__(self, indices: Sequence[int], batch_size: int, seed: int = 0, flip: bool = True,
                 drop_last: bool = True):
        self.indices = np.asarray(indices, dtype=np.int64)
        if batch_size < 1 or (drop_last and len(self.indices) < batch_size):
            raise ConfigError(f"batch_size={batch_size} does not fit {len(self.indices)} images "
                              "(need 1 <= batch_size <= images); lower batch_size")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.flip = flip
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def epoch_keys(self, epoch: int) -> list[list[tuple[int, int]]]:
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.indices), generator=g).numpy()
        flips = (torch.rand(len(self.indices), generator=g) < 0.5).numpy() if self.flip else np.zeros(len(order), bool)
        keys = [(int(self.indices[i]), int(f)) for i, f in zip(order, flips)]
        n = len(self)
        return [keys[b * self.batch_size:(b + 1) * self.batch_size] for b in range(n)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        yield from self.epoch_keys(self.epoch)[self.start_batch:]

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``range(n)`` into (train, val) with ``round(n * val_fraction)`` val items."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction={val_fraction} must be in (0, 1)")
    g = torch.Generator()
    g.manual_seed(int(seed))
    order = torch.randperm(n, generator=g).numpy()
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
        raise ConfigError(f"val_fraction={val_fraction} of {n} images leaves an empty split")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def keyed_loader(dataset: KeyedFaceDataset, sampler: EpochBatchSampler, num_workers: int = 0) -> DataLoader:
    """A DataLoader over ``dataset`` driven by ``sampler`` (no further randomness)."""
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


class BatchHolder:
    """The batch currently being trained on, shared by :class:`DistillLoader` and the head."""

    def __init__(self) -> None:
        self.images: torch.Tensor | None = None
        self.indices: torch.Tensor | None = None
        self.flipped: torch.Tensor | None = None


class DistillLoader:
    """Wraps a keyed loader for :func:`facenas.plugins.engine.train`, which expects ``(images,
    labels)`` batches: it yields those and records the batch (images and keys) in a
    :class:`BatchHolder`, where the distillation head reads it to fetch the teacher's features.

    The training engine calls the head right after the backbone on the same batch, so the holder
    always describes the batch whose embeddings the head receives. ``sampler.set_epoch`` (called
    by the engine) fixes the epoch's order, so resuming skips to the same batches.
    """

    def __init__(self, loader: DataLoader, holder: BatchHolder):
        self.loader = loader
        self.holder = holder
        self.dataset = loader.dataset
        self.sampler = loader.batch_sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, indices, flipped in self.loader:
            self.holder.images, self.holder.indices, self.holder.flipped = images, indices, flipped
            yield images, labels


def describe_data(source: str, image_size: Any) -> str:
    """A string naming a data source and input size (part of a teacher cache's identity)."""
    return f"{os.path.abspath(source) if source != 'synthetic' else source}@{image_size}"
