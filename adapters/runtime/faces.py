"""Real aligned faces for parity checks and int8 calibration, read from the real-data folder (``$FACENAS_SHARED_DATA``).

Export parity is measured on real faces (not random noise, whose statistics differ from what a
deployed network sees). :func:`load_faces` reads ``n`` images from a ``.rec`` folder (InsightFace
RecordIO, through the data layer's reader) or a ``.bin`` verification set; :func:`default_faces`
finds them in the shared data folder and returns ``None`` with a logged reason when it is absent,
so export still works (with a clear message) on a machine without the data.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from facenas.errors import DataFormatError

log = logging.getLogger(__name__)


def _rec_dir(path: Path) -> Path | None:
    if path.is_dir() and (path / "train.rec").is_file() and (path / "train.idx").is_file():
        return path
    if path.suffix == ".rec" and path.with_suffix(".idx").is_file():
        return path.parent
    return None


def load_faces(source: str | os.PathLike, n: int = 16, seed: int = 0, stride: int | None = None) -> np.ndarray:
    """``n`` aligned faces as uint8 ``(n, H, W, 3)`` RGB from a ``.rec`` folder/file or a ``.bin``.

    Args:
        source: a RecordIO folder (``train.rec`` + ``train.idx``), a ``.rec`` file beside its
            ``.idx``, or an InsightFace ``.bin``.
        n: number of faces.
        seed: picks which images (evenly spread over the file, offset by the seed), so
            calibration faces cover many identities.
        stride: take every ``stride``-th image instead (overrides the even spread).
    """
    path = Path(source)
    rec = _rec_dir(path)
    if rec is not None:
        from facenas.adapters.insightface.recordio import IndexedRecordIO, decode_image, read_layout, unpack

        rec_file = path if path.suffix == ".rec" else rec / "train.rec"
        with IndexedRecordIO(rec_file.with_suffix(".idx"), rec_file, "r") as reader:
            keys = read_layout(reader).image_keys
            picks = _pick(len(keys), n, seed, stride)
            images = []
            for i in picks:
                _, payload = unpack(reader.read_idx(keys[i]), f"{rec_file} key {keys[i]}")
                images.append(decode_image(payload, str(rec_file)))
        return np.stack(images)
    if path.suffix == ".bin" and path.is_file():
        from facenas.adapters.insightface.binset import read_bin_raw
        from facenas.adapters.insightface.recordio import decode_image

        encoded, _ = read_bin_raw(path)
        picks = _pick(len(encoded), n, seed, stride)
        return np.stack([decode_image(encoded[i], str(path)) for i in picks])
    raise DataFormatError(str(path), "not a RecordIO folder (train.rec + train.idx), a .rec file or a .bin set",
                          "give a .rec folder of aligned faces (e.g. celeba299) or a .bin set (e.g. lfw_devtest.bin)")


def _pick(total: int, n: int, seed: int, stride: int | None) -> list[int]:
    if total == 0:
        raise DataFormatError("<faces>", "the face source holds no images")
    if stride:
        return [(seed + i * stride) % total for i in range(n)]
    step = max(1, total // n)
    return [(seed + i * step) % total for i in range(n)]


def default_faces(n: int = 16) -> tuple[np.ndarray | None, str]:
    """Faces from the shared data folder (``celeba299``, else ``lfw_devtest.bin``); ``None`` if absent.

    Returns ``(faces, source description)``; the description says why when there are none.
    """
    from facenas.utils.paths import DATA_ENV, shared_data_dir

    root = shared_data_dir()
    for candidate in (root / "celeba299", root / "lfw_devtest.bin", root / "lfw.bin"):
        if candidate.exists():
            try:
                return load_faces(candidate, n), str(candidate)
            except DataFormatError as exc:
                log.warning("cannot read faces from %s: %s", candidate, exc)
    return None, (f"no real faces found under {root} (set {DATA_ENV} to a folder holding celeba299/ or lfw_devtest.bin); "
                  "parity was checked on random inputs only")


def normalise(faces: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 ``(B, H, W, 3)`` RGB -> float32 ``(B, 3, h, w)`` as InsightFace normalises: ``(x/255-0.5)/0.5``.

    With ``size`` the faces are resized with antialiased bilinear interpolation (the data layer's
    resize for networks trained on smaller input, e.g. the 64x64 CPU-scale protocol).
    """
    from facenas.adapters.insightface.evaluate import preprocess

    return preprocess(faces, size).numpy()
