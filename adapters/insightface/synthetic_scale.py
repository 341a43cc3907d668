"""A RecordIO with the *shape* of a large face training set (MS1MV3: 5,179,510 images, 93,431 identities).

The images carry no faces: a pool of ``distinct_jpegs`` small seeded JPEGs (``jpeg_size`` pixels
square) is encoded once and reused, so millions of records are written in minutes and the files
stay small (about 0.7 kB a record at 16 px). What is real is everything the data layer touches:
InsightFace's layout (key-0 header record, one record per image with its identity label, one
record per identity with its image-key range), byte-exact dmlc RecordIO framing and a
``key\\toffset`` ``.idx`` of the full length. It is what ``benchmarks/bench_ms1m_scale.py`` measures
index loading, random access and PartialFC at that scale on.

    facenas data synth /tmp/ms1m_synth --shape ms1mv3           # 5,179,510 images, 93,431 identities
    facenas data synth /tmp/small --total-images 100000 --identities 2000
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np

from facenas.errors import ConfigError
from facenas.utils.seed import make_rng

log = logging.getLogger(__name__)

#: published sizes of InsightFace's training sets: ``name -> (images, identities)``
SHAPES: dict[str, tuple[int, int]] = {
    "ms1mv2": (5_822_653, 85_742),
    "ms1mv3": (5_179_510, 93_431),
    "glint360k": (17_091_657, 360_232),
    "webface4m": (4_235_242, 205_990),
}


@dataclasses.dataclass
class ScaleShape:
    """How many records to write and how the tiny images look.

    Attributes:
        num_images: image records (keys ``1 .. num_images``).
        num_identities: identities; images are split as evenly as possible (contiguous per identity).
        jpeg_size: side of the square JPEGs in pixels.
        distinct_jpegs: size of the pool of encoded images that the records reuse.
        seed: seed of the pool's pixels.
        pool: ``fields`` (smooth colour fields: the smallest files) or ``faces`` (the cartoon faces
            of :mod:`.synthetic` with sensor noise: JPEGs whose size and decode cost are close to
            real aligned faces at 112 px).
    """

    num_images: int
    num_identities: int
    jpeg_size: int = 16
    distinct_jpegs: int = 1024
    seed: int = 0
    pool: str = "fields"

    def check(self) -> None:
        if self.num_identities < 1 or self.num_images < self.num_identities:
            raise ConfigError(f"--total-images {self.num_images} / --identities {self.num_identities}: need at least one "
                              "identity and at least one image per identity")
        if not 8 <= self.jpeg_size <= 512:
            raise ConfigError(f"--jpeg-size {self.jpeg_size} must be in [8, 512]")
        if self.distinct_jpegs < 1:
            raise ConfigError(f"--distinct-jpegs {self.distinct_jpegs} must be >= 1")
        if self.pool not in ("fields", "faces"):
            raise ConfigError(f"--jpeg-pool {self.pool!r} is not 'fields' or 'faces'")


def shape_by_name(name: str) -> tuple[int, int]:
    try:
        return SHAPES[name.lower()]
    except KeyError:
        raise ConfigError(f"--shape {name!r} is not one of {sorted(SHAPES)}") from None


def jpeg_pool(count: int, size: int, seed: int = 0, kind: str = "fields") -> list[bytes]:
    """``count`` distinct JPEGs of ``size`` x ``size``: smooth seeded colour fields (upsampled 4x4 noise),
    or (``kind="faces"``) one rendered synthetic face per identity ``0 .. count-1``."""
    import cv2

    if kind == "faces":
        from facenas.adapters.insightface.synthetic import SyntheticFaces, _encode

        images, _ = SyntheticFaces(seed=seed, image_size=size).generate(count, 1)
        return _encode(images)
    r = make_rng(np.random.SeedSequence([seed, 17]))
    out = []
    for _ in range(count):
        small = r.uniform(0, 255, (4, 4, 3)).astype(np.float32)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
            raise RuntimeError("OpenCV could not encode a JPEG")
        out.append(buf.tobytes())
    return out


def identity_sizes(num_images: int, num_identities: int) -> np.ndarray:
    """Images per identity: ``num_images // num_identities``, the first ``num_images % num_identities`` one more."""
    q, rem = divmod(num_images, num_identities)
    sizes = np.full(num_identities, q, dtype=np.int64)
    sizes[:rem] += 1
    return sizes


def write_scale_dataset(out_dir: str | os.PathLike, shape: ScaleShape, progress_every: int = 500_000) -> dict:
    """Write ``train.rec``/``train.idx``/``property`` with ``shape``'s sizes into ``out_dir``.

    The records are those :func:`~.recordio.write_insightface_rec` writes for the same labels
    (byte-compatible with ``mxnet.recordio``); only the image bytes repeat. Returns a summary
    with the sizes, file sizes and seconds taken.
    """
    from facenas.adapters.insightface.recordio import IRHeader, encode_record, pack

    shape.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    pool = jpeg_pool(shape.distinct_jpegs, shape.jpeg_size, shape.seed, shape.pool)
    sizes = identity_sizes(shape.num_images, shape.num_identities)
    n, k = shape.num_images, shape.num_identities
    first_id_key = n + 1
    offsets = np.empty(n + k + 1, dtype=np.int64)
    pos = 0
    with open(out / "train.rec", "wb", buffering=1 << 22) as fh:
        record = encode_record(pack(IRHeader(0, [float(first_id_key), float(first_id_key + k)], 0, 1), b""))
        offsets[0] = pos
        fh.write(record)
        pos += len(record)
        key = 1
        npool = len(pool)
        for label, count in enumerate(sizes.tolist()):
            flabel = float(label)
            for j in range(count):
                record = encode_record(pack((0, flabel, key, 0), pool[(label * 31 + j) % npool]))
                offsets[key] = pos
                fh.write(record)
                pos += len(record)
                key += 1
                if progress_every and key % progress_every == 0:
                    rate = key / max(1e-9, time.monotonic() - t0)
                    log.info("synth %s: %d / %d records (%.0f/s, ETA %.0f s)", out, key, n + k + 1, rate,
                             (n + k + 1 - key) / rate)
        starts = np.concatenate([[1], 1 + np.cumsum(sizes)])
        for j in range(k):
            record = encode_record(pack((0, [float(starts[j]), float(starts[j + 1])], 0, 0), b""))
            offsets[first_id_key + j] = pos
            fh.write(record)
            pos += len(record)
    _write_index(out / "train.idx", offsets)
    (out / "property").write_text(f"{k},{shape.jpeg_size},{shape.jpeg_size}")
    seconds = time.monotonic() - t0
    info = {"path": str(out), "images": n, "identities": k, "records": n + k + 1, "jpeg_size": shape.jpeg_size,
            "distinct_jpegs": len(pool), "jpeg_pool": shape.pool, "mean_jpeg_bytes": round(float(np.mean([len(p) for p in pool])), 1), "rec_bytes": pos, "idx_bytes": (out / "train.idx").stat().st_size,
            "seconds": round(seconds, 1)}
    log.info("wrote %s: %d images of %d identities, %.2f GB in %.0f s", out, n, k, pos / 1e9, seconds)
    return info


def _write_index(path: Path, offsets: np.ndarray, chunk: int = 1 << 20) -> None:
    """``key\\toffset`` lines for keys ``0 .. len(offsets) - 1``, as ``MXIndexedRecordIO`` writes them."""
    with open(path, "w", encoding="ascii") as fh:
        for start in range(0, len(offsets), chunk):
            part = offsets[start:start + chunk].tolist()
            fh.write("".join(f"{start + i}\t{o}\n" for i, o in enumerate(part)))
