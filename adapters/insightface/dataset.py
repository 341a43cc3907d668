"""Training datasets and ``get_dataloader`` with arcface_torch's contract, CPU-friendly.

``get_dataloader(root_dir, local_rank, batch_size, dali=False, seed=2048, num_workers=2)``
returns batches of ``(images, labels)``: float32 ``(B, 3, H, W)`` RGB images with a random
horizontal flip, normalised as ``(x/255 - 0.5)/0.5``, and int64 identity labels. ``root_dir`` is

- a folder with ``train.rec`` + ``train.idx`` (InsightFace RecordIO, read without MXNet),
- an image folder with one sub-folder per identity (``torchvision.datasets.ImageFolder`` layout),
- ``"synthetic"``: learnable synthetic identities generated in memory (see :mod:`.synthetic`).

Unlike arcface_torch's loader it needs no CUDA (no stream prefetcher, no pinned memory by
default), each worker process opens its own ``.rec`` handle, and ``image_size`` can downsize
images (antialiased bilinear) for CPU-scale training.
"""
from __future__ import annotations

import functools
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate, get_worker_info

from facenas.errors import DataFormatError, FacenasError
from facenas.adapters.insightface.checks import image_dims, read_property
from facenas.adapters.insightface.recordio import IndexedRecordIO, decode_image, read_image_record, read_layout

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def to_tensor(img: np.ndarray, image_size: int | None, flip: bool) -> torch.Tensor:
    """uint8 HxWx3 RGB -> normalised float CHW tensor (optionally resized, randomly flipped)."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0).sub_(0.5).div_(0.5)
    if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
        x = torch.nn.functional.interpolate(x[None], size=(image_size, image_size), mode="bilinear",
                                            align_corners=False, antialias=True)[0]
    # torch's RNG, as torchvision's RandomHorizontalFlip: seeded per worker by the DataLoader
    if flip and torch.rand(1).item() < 0.5:
        x = torch.flip(x, dims=[2])
    return x


class SampleError:
    """A sample's data error, carried from a DataLoader worker to the main process as a "batch".

    DataLoader re-raises a worker's exception as a ``RuntimeError`` holding the worker's whole
    traceback; returning the error as data lets :class:`FaceDataLoader` raise the original one-line
    :class:`~facenas.errors.DataFormatError` in the main process instead.
    """

    def __init__(self, error: FacenasError):
        self.error = error if isinstance(error, DataFormatError) else FacenasError(str(error))


def _collate(batch: list) -> Any:
    for item in batch:
        if isinstance(item, SampleError):
            return item
    return default_collate(batch)


class _CheckedIterator:
    """Iterates a DataLoader's iterator, raising the :class:`SampleError` a worker sent."""

    def __init__(self, iterator: Any):
        self._iterator = iterator

    def __iter__(self) -> "_CheckedIterator":
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            raise StopIteration
        batch = next(self._iterator)
        if isinstance(batch, SampleError):
            self._iterator = None  # the workers stop now (their iterator shuts them down when collected)
            raise batch.error
        return batch

    def __len__(self) -> int:
        return len(self._iterator) if self._iterator is not None else 0


class FaceDataLoader(DataLoader):
    """A DataLoader whose workers' data errors surface as the one-line error they are."""

    def __iter__(self) -> _CheckedIterator:  # type: ignore[override]
        return _CheckedIterator(super().__iter__())


class FaceDataset(Dataset):
    """Shared ``__getitem__`` of the face datasets: read, check the size, to a tensor.

    Subclasses implement ``read(index) -> (HxWx3 uint8 RGB, label)`` and ``describe(index)``. With
    no ``image_size`` (no resize) every image must have ``expected_size`` (``property``'s, else the
    first image's), so a batch never meets ``torch.stack`` with mixed sizes.
    """

    image_size: int | None = None
    flip: bool = True
    expected_size: tuple[int, int] | None = None
    size_source = "the first image's size"  # where expected_size comes from, for the error message

    def describe(self, index: int) -> str:
        return f"sample {index}"

    def check_size(self, img: np.ndarray, index: int) -> None:
        if self.image_size is None and self.expected_size is not None and tuple(img.shape[:2]) != self.expected_size:
            h, w = self.expected_size
            raise DataFormatError(self.describe(index), f"image is {img.shape[0]}x{img.shape[1]} (HxW) but the dataset's "
                                                        f"images are {h}x{w} ({self.size_source}); a batch needs one size",
                                  "set image_size to resize every image, or resize/repack the odd ones")

    def __getitem__(self, index: int):
        try:
            img, label = self.read(index)
            self.check_size(img, index)
        except FacenasError as exc:
            if get_worker_info() is None:
                raise
            return SampleError(exc)
        return to_tensor(img, self.image_size, self.flip), torch.tensor(label, dtype=torch.long)


def _encoded_size(data: bytes, where: str) -> tuple[int, int]:
    """``(height, width)`` of an encoded image, from its header (decoding only formats not parsed there)."""
    dims = image_dims(data)
    if dims is not None:
        return dims[1], dims[0]
    img = decode_image(data, where)
    return int(img.shape[0]), int(img.shape[1])


class MXFaceDataset(FaceDataset):
    """InsightFace ``train.rec``/``train.idx`` as a map-style dataset (label = identity).

    ``num_classes`` is the number of identity records (or ``property``'s count without them);
    ``property`` must agree with the identity records. Each read checks the record's label (finite,
    whole, the identity whose record covers the key) and its image's declared size.
    """

    def __init__(self, root_dir: str | os.PathLike, image_size: int | None = None, flip: bool = True):
        root = Path(root_dir)
        self.root_dir = str(root)
        self.record = IndexedRecordIO(root / "train.idx", root / "train.rec", "r")
        self.layout = read_layout(self.record)
        self.imgidx = np.asarray(self.layout.image_keys, dtype=np.int64)
        if self.imgidx.size == 0:
            raise DataFormatError(self.record.rec_path, "holds no image records")
        self.image_size = image_size
        self.flip = flip
        self.property = read_property(root / "property")
        identities = len(self.layout.identity_ranges) or None
        if self.property is not None and identities is not None and self.property.num_classes != identities:
            raise DataFormatError(str(root / "property"), f"says {self.property.num_classes} identities but "
                                                          f"{self.record.rec_path} has {identities} identity records",
                                  f"write '{identities},{self.property.height},{self.property.width}' into property, "
                                  "or rebuild the dataset with `facenas data pack`")
        self.num_classes = identities or (self.property.num_classes if self.property is not None else None)
        if self.property is not None:
            self.expected_size = (self.property.height, self.property.width)
            self.size_source = f"{root / 'property'} says {self.property.height}x{self.property.width}"
        else:
            _, payload = read_image_record(self.record, self.layout, int(self.imgidx[0]), self.num_classes)
            self.expected_size = _encoded_size(payload, self.describe(0))

    def __len__(self) -> int:
        return int(self.imgidx.size)

    def describe(self, index: int) -> str:
        return f"{self.record.rec_path} record {int(self.imgidx[index])}"

    def read(self, index: int) -> tuple[np.ndarray, int]:
        key = int(self.imgidx[index])
        label, payload = read_image_record(self.record, self.layout, key, self.num_classes)
        return decode_image(payload, self.describe(index)), label


class ImageFolderDataset(FaceDataset):
    """One sub-folder per identity (sorted names -> labels 0..K-1), images of any OpenCV format."""

    def __init__(self, root_dir: str | os.PathLike, image_size: int | None = None, flip: bool = True):
        root = Path(root_dir)
        if not root.is_dir():
            raise DataFormatError(str(root), "is neither a RecordIO folder (train.rec + train.idx) nor an image folder",
                                  "give a folder with train.rec/train.idx, one sub-folder per identity, or 'synthetic'")
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples: list[tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            for f in sorted((root / name).iterdir()):
                if f.suffix.lower() in IMAGE_EXTS:
                    self.samples.append((str(f), label))
        if not self.samples:
            raise DataFormatError(str(root), f"no identities with images found ({len(self.classes)} sub-folders, no "
                                             f"{'/'.join(IMAGE_EXTS[:4])} files)",
                                  "an image folder needs one sub-folder per identity holding its face images")
        self.num_classes = len(self.classes)
        self.image_size = image_size
        self.flip = flip
        first = self.samples[0][0]
        with open(first, "rb") as fh:
            self.expected_size = _encoded_size(fh.read(), first)
        self.size_source = f"{first} is {self.expected_size[0]}x{self.expected_size[1]}"

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self, index: int) -> str:
        return self.samples[index][0]

    def read(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[index]
        with open(path, "rb") as fh:
            return decode_image(fh.read(), path), label


class SyntheticFaceDataset(FaceDataset):
    """Synthetic identities generated in memory (``get_dataloader("synthetic", ...)``)."""

    def __init__(self, image_size: int | None = None, flip: bool = True, num_identities: int = 64,
                 images_per_identity: int = 16, seed: int = 0):
        from facenas.adapters.insightface.synthetic import SyntheticFaces

        gen = SyntheticFaces(seed=seed)
        self.images, labels = gen.generate(num_identities, images_per_identity)
        self.labels = labels.astype(np.int64)
        self.num_classes = num_identities
        self.image_size = image_size
        self.flip = flip

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])


def build_dataset(root_dir: str | os.PathLike, image_size: int | None = None, flip: bool = True) -> Dataset:
    """The dataset for ``root_dir`` (RecordIO folder, image folder or ``"synthetic"``)."""
    if str(root_dir) == "synthetic":
        return SyntheticFaceDataset(image_size=image_size, flip=flip)
    root = Path(root_dir)
    if (root / "train.rec").exists() or (root / "train.idx").exists():
        return MXFaceDataset(root, image_size=image_size, flip=flip)
    return ImageFolderDataset(root, image_size=image_size, flip=flip)


def _worker_init_fn(worker_id: int, num_workers: int, rank: int, seed: int) -> None:
    # as arcface_torch: distinct, reproducible numpy/random seeds per (rank, worker)
    worker_seed = num_workers * rank + worker_id + seed
    np.random.seed(worker_seed % 2**32)
    random.seed(worker_seed)


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def get_dataloader(root_dir: str | os.PathLike, local_rank: int, batch_size: int, dali: bool = False,
                   seed: int | None = 2048, num_workers: int = 2, image_size: int | None = None,
                   pin_memory: bool | None = None, drop_last: bool = True) -> DataLoader:
    """arcface_torch's ``get_dataloader``: a shuffled, distributed-aware loader of training faces.

    Args:
        root_dir: RecordIO folder, image folder, or ``"synthetic"``.
        local_rank: this process's local rank (kept for arcface_torch compatibility).
        batch_size: images per batch (per process).
        dali: NVIDIA DALI is not supported (CPU-first); ``True`` raises.
        seed: sampler shuffle seed and worker seeds.
        num_workers: DataLoader worker processes (each opens its own ``.rec`` handle).
        image_size: resize images to ``image_size`` x ``image_size`` (CPU-scale recipes).
        pin_memory: default: only when CUDA is available.
        drop_last: drop the last incomplete batch (as arcface_torch).
    """
    if dali:
        raise FacenasError("dali=True is not supported by facenas's loader (it is CPU-first); set dali=False")
    dataset = build_dataset(root_dir, image_size=image_size)
    if getattr(dataset, "num_classes", None) == 1:
        raise DataFormatError(str(root_dir), "holds a single identity; a margin-softmax classifier needs at least 2 "
                                             "(with one class the loss is 0 from the first step and nothing is learnt)",
                              "train on a dataset with many identities")
    rank, world_size = _dist_info()
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed or 0)
    init_fn = None if seed is None else functools.partial(_worker_init_fn, num_workers=num_workers, rank=rank, seed=seed)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return FaceDataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                          pin_memory=pin_memory, drop_last=drop_last, worker_init_fn=init_fn, persistent_workers=False,
                          collate_fn=_collate)


def dataset_info(root_dir: str | os.PathLike, check_decode: bool = True) -> dict[str, Any]:
    """Images, identities and image size of a training folder; decodes every image when asked."""
    from facenas.utils.progress import Progress

    ds = build_dataset(root_dir, flip=False)
    if isinstance(ds, MXFaceDataset):
        kind = "recordio"
    elif isinstance(ds, ImageFolderDataset):
        kind = "image_folder"
    else:
        kind = "synthetic"
    first, _ = ds.read(0)
    labels: set[int] = set()
    sizes: set[tuple[int, int]] = set()
    if check_decode:
        prog = Progress(len(ds), "decoding images", unit="img")
        for i in range(len(ds)):
            img, label = ds.read(i)
            labels.add(label)
            sizes.add((int(img.shape[0]), int(img.shape[1])))
            prog.update()
    else:
        labels = set(range(ds.num_classes or 0))
    prop = getattr(ds, "property", None)
    if check_decode and prop is not None and (prop.height, prop.width) not in sizes:
        found = ", ".join(f"{a}x{b}" for a, b in sorted(sizes))
        raise DataFormatError(str(Path(root_dir) / "property"), f"says images are {prop.height}x{prop.width} but "
                                                                f"they are {found}",
                              f"write '{prop.num_classes},{first.shape[0]},{first.shape[1]}' into property")
    h, w = first.shape[:2]
    return {
        "path": str(root_dir),
        "format": kind,
        "images": len(ds),
        "identities": len(labels) if check_decode else (ds.num_classes or 0),
        "image_size": [int(h), int(w)],
        "all_decoded": bool(check_decode),
        "image_sizes": sorted([list(s) for s in sizes]) if check_decode else None,
    }
