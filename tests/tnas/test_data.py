"""Keyed batches: reproducible order and flips per (seed, epoch), resumable mid-epoch, splits, the engine loader."""
from __future__ import annotations

import pytest
import torch

from facenas.errors import ConfigError
from facenas.plugins.tnas.data import (
    BatchHolder,
    DistillLoader,
    EpochBatchSampler,
    KeyedFaceDataset,
    keyed_loader,
    split_indices,
)


def test_sampler_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    s = EpochBatchSampler(range(10, 30), 4, seed=3)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == len(s) == 5
    keys = [k for batch in full for k in batch]
    assert sorted(i for i, _ in keys) == list(range(10, 30))
    assert {f for _, f in keys} == {0, 1}
    s.set_epoch(2, start_batch=3)
    assert list(s) == full[3:]
    s.set_epoch(3)
    assert list(s) != full
    assert list(EpochBatchSampler(range(10, 30), 4, seed=3, flip=False).epoch_keys(0))[0][0][1] == 0
    with pytest.raises(ConfigError, match="batch_size"):
        EpochBatchSampler(range(3), 4)


def test_split_is_disjoint_and_seeded():
    a, b = split_indices(100, 0.3, seed=1)
    assert len(b) == 30 and len(a) == 70 and not set(a) & set(b)
    a2, b2 = split_indices(100, 0.3, seed=1)
    assert (a == a2).all() and (b == b2).all()
    with pytest.raises(ConfigError):
        split_indices(10, 1.0, 0)


def test_keyed_dataset_reads_rec_and_bin_with_explicit_flips(synthetic_data):
    ds = KeyedFaceDataset(str(synthetic_data), image_size=32)
    assert len(ds) == 240 and ds.num_classes == 24
    x0, label, idx, flip = ds[(5, 0)]
    x1, _, _, flip1 = ds[(5, 1)]
    assert x0.shape == (3, 32, 32) and int(idx) == 5 and int(flip) == 0 and int(flip1) == 1
    assert torch.equal(torch.flip(x0, dims=[2]), x1)
    assert 0 <= int(label) < 24
    bins = KeyedFaceDataset(str(synthetic_data / "val.bin"), image_size=32)
    assert len(bins) == 240 and int(bins[(0, 0)][1]) == -1


def test_distill_loader_records_the_batch_it_yields(synthetic_data):
    ds = KeyedFaceDataset(str(synthetic_data), image_size=32)
    holder = BatchHolder()
    loader = DistillLoader(keyed_loader(ds, EpochBatchSampler(range(len(ds)), 16, seed=0)), holder)
    assert len(loader) == 15 and loader.dataset.num_classes == 24
    loader.sampler.set_epoch(1)
    for images, labels in loader:
        assert holder.images is images and holder.indices.shape == (16,) and labels.dtype == torch.long
        i, f = int(holder.indices[0]), int(holder.flipped[0])
        assert torch.equal(ds[(i, f)][0], images[0])
        break
