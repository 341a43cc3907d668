"""The search's data: the training identities' images split 8:1:1 (Zhu 2019, Sec. 4.2.1), in memory.

The paper divides MS-Celeb-1M into training, validation and test images at 8:1:1; the child
network trains on the first part and the controller's accuracy is measured on the second. Here
every identity's images are split at those fractions (so validation and test images are new
images of *training* identities, and a classifier can score them). Images are read with the
data layer (:func:`facenas.adapters.insightface.dataset.build_dataset`), decoded and resized once
(the data layer's :func:`~facenas.adapters.insightface.dataset.to_tensor`) and kept in memory --
celeba299 at 64 x 64 is 300 MB of float32 -- so search epochs do not decode JPEGs again.
Training batches are shuffled and flipped from one seeded ``torch.Generator`` whose state is
checkpointed with the search.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterator

import numpy as np
import torch

from facenas.errors import FacenasError
from facenas.utils.progress import Progress

log = logging.getLogger(__name__)


def dataset_labels(dataset: Any) -> np.ndarray:
    """Identity label of every image of a data-layer dataset (RecordIO, image folder, synthetic)."""
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return np.asarray(labels, dtype=np.int64)
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return np.asarray([label for _, label in samples], dtype=np.int64)
    record = getattr(dataset, "record", None)
    if record is not None:
        from facenas.adapters.insightface.recordio import unpack

        out = []
        for key in dataset.imgidx:
            header, _ = unpack(record.read_idx(int(key)), f"{record.rec_path} record {int(key)}")
            lab = header.label if np.isscalar(header.label) else np.asarray(header.label).ravel()[0]
            out.append(int(lab))
        return np.asarray(out, dtype=np.int64)
    raise FacenasError(f"cannot read the labels of a {type(dataset).__name__}; expected a facenas data-layer dataset")


def identity_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Indices of each identity's images split into train / val / test at ``fractions``.

    Each identity keeps at least one training image; validation and test get
    ``round(n * fraction)`` images each when the identity has enough (>= 3) images.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_val = int(round(n * fractions[1])) if n >= 3 else 0
        n_test = int(round(n * fractions[2])) if n >= 3 else 0
        while n - n_val - n_test < 1:  # keep a training image (only extreme fractions get here)
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
        parts["val"] += idx[:n_val].tolist()
        parts["test"] += idx[n_val:n_val + n_test].tolist()
        parts["train"] += idx[n_val + n_test:].tolist()
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in parts.items()}


@dataclasses.dataclass
class FaceTensors:
    """Decoded, resized, normalised images ``(N, 3, H, W)`` and their labels, in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def batches(self, batch_size: int, generator: torch.Generator | None = None, flip: bool = False,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches in order, or shuffled (and randomly flipped) with ``generator``."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            if len(idx) == 0:
                break
            x = self.images[idx]
            if flip:
                mask = torch.rand(len(idx), generator=generator) < 0.5
                x = torch.where(mask[:, None, None, None], torch.flip(x, dims=[3]), x)
            yield x, self.labels[idx]


@dataclasses.dataclass
class SearchData:
    """The three parts of the training identities' images and the number of identities."""

    train: FaceTensors
    val: FaceTensors
    test: FaceTensors
    num_classes: int

    def summary(self) -> dict[str, int]:
        return {"train_images": len(self.train), "val_images": len(self.val), "test_images": len(self.test),
                "identities": self.num_classes}


def load_search_data(rec: str, image_size: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     seed: int = 0) -> SearchData:
    """Read ``rec`` (a RecordIO folder, an image folder or ``"synthetic"``) and split it per identity."""
    from facenas.adapters.insightface.dataset import build_dataset, to_tensor

    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0 or fractions[0] <= 0:
        raise FacenasError(f"split fractions {list(fractions)} must be non-negative, sum to 1, with a training part")
    dataset = build_dataset(rec, image_size=image_size, flip=False)
    labels = dataset_labels(dataset)
    split = identity_split(labels, fractions, seed)
    images = torch.empty(len(labels), 3, image_size, image_size)
    progress = Progress(len(labels), f"decoding {rec}", unit="img")
    for i in range(len(labels)):
        img, _ = dataset.read(i)
        images[i] = to_tensor(img, image_size, flip=False)
        progress.update()
    progress.close()
    lab = torch.as_tensor(labels)
    parts = {k: FaceTensors(images[v], lab[v]) for k, v in split.items()}
    data = SearchData(parts["train"], parts["val"], parts["test"], int(labels.max()) + 1)
    log.info("search data %s: %s", rec, data.summary())
    return data
