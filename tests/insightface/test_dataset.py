"""get_dataloader over RecordIO, image folders and synthetic identities; workers; evaluator."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from facenas.adapters.insightface.dataset import (
    ImageFolderDataset,
    MXFaceDataset,
    build_dataset,
    dataset_info,
    get_dataloader,
)
from facenas.adapters.insightface.evaluate import VerificationEvaluator, preprocess
from facenas.errors import DataFormatError, FacenasError


def test_recordio_loader_batches(synthetic_data):
    loader = get_dataloader(synthetic_data, 0, batch_size=16, num_workers=0)
    images, labels = next(iter(loader))
    assert images.shape == (16, 3, 112, 112) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.max() < 24
    assert -1.0 <= images.min() and images.max() <= 1.0
    assert len(loader) == 240 // 16
    assert loader.dataset.num_classes == 24


def test_loader_workers_open_their_own_handles_and_resize(synthetic_data):
    loader = get_dataloader(synthetic_data, 0, batch_size=8, num_workers=2, image_size=64)
    seen = 0
    for images, labels in loader:
        assert images.shape == (8, 3, 64, 64)
        seen += len(labels)
    assert seen == 240


def test_preprocessing_matches_arcface_torch(synthetic_data):
    ds = MXFaceDataset(synthetic_data, flip=False)
    img, label = ds.read(3)
    x, y = ds[3]
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.allclose(x, expected) and int(y) == label
    # flips happen about half the time, driven by torch's RNG
    ds.flip = True
    torch.manual_seed(0)
    flipped = sum(not torch.equal(ds[3][0], expected) for _ in range(200))
    assert 60 < flipped < 140


def test_distributed_sampler_shards(synthetic_data):
    ds = build_dataset(synthetic_data)
    from torch.utils.data import DistributedSampler

    parts = [set(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=1)) for r in (0, 1)]
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == len(ds)


def test_image_folder_and_errors(tmp_path):
    for ident in ("id_b", "id_a"):
        (tmp_path / "faces" / ident).mkdir(parents=True)
        for k in range(3):
            cv2.imwrite(str(tmp_path / "faces" / ident / f"{k}.png"), np.full((20, 20, 3), 30 * k, np.uint8))
    ds = ImageFolderDataset(tmp_path / "faces")
    assert ds.classes == ["id_a", "id_b"] and len(ds) == 6 and ds.num_classes == 2
    loader = get_dataloader(tmp_path / "faces", 0, batch_size=2, num_workers=0)
    assert next(iter(loader))[0].shape == (2, 3, 20, 20)
    (tmp_path / "empty" / "nobody").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="no identities with images"):
        get_dataloader(tmp_path / "empty", 0, batch_size=2)
    with pytest.raises(DataFormatError, match="neither a RecordIO folder"):
        get_dataloader(tmp_path / "missing", 0, batch_size=2)
    with pytest.raises(FacenasError, match="dali=True"):
        get_dataloader(tmp_path / "faces", 0, batch_size=2, dali=True)


def test_synthetic_loader_in_memory():
    loader = get_dataloader("synthetic", 0, batch_size=32, num_workers=0, image_size=64)
    images, labels = next(iter(loader))
    assert images.shape == (32, 3, 64, 64) and loader.dataset.num_classes == 64


def test_dataset_info(synthetic_data):
    info = dataset_info(synthetic_data)
    assert info["images"] == 240 and info["identities"] == 24 and info["image_size"] == [112, 112]
    assert info["all_decoded"]


def test_evaluator_on_synthetic_pairs(synthetic_data):
    # a fixed "pixel" embedder already separates synthetic identities better than chance,
    # and the evaluator accepts torch modules and numpy callables alike
    class Pixels(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)

    ev = VerificationEvaluator({"val": synthetic_data / "val.bin"}, batch_size=32)
    m = ev(Pixels())
    assert set(m) >= {"val_acc", "val_acc_std", "val_tar_at_far_1e-3", "val_auc", "val_eer"}
    m2 = ev(lambda batch: Pixels()(torch.from_numpy(batch)).numpy())
    assert m2["val_acc"] == m["val_acc"]
    ev_small = VerificationEvaluator({"val": synthetic_data / "val.bin"}, image_size=32)
    assert ev_small(Pixels())["val_acc"] > 0.5
    assert preprocess(np.zeros((1, 112, 112, 3), np.uint8), 64).shape == (1, 3, 64, 64)


@pytest.mark.real_data
def test_celeba299_loader(celeba299):
    loader = get_dataloader(celeba299, 0, batch_size=64, num_workers=0, image_size=64)
    assert loader.dataset.num_classes == 299 and len(loader.dataset) == 6284
    images, labels = next(iter(loader))
    assert images.shape == (64, 3, 64, 64) and labels.max() < 299
