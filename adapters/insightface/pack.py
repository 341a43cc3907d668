"""Pack an image folder (one sub-folder per identity) into InsightFace's ``train.rec/.idx/property``.

Streams: each image file is read (and, with ``check=True``, decoded once to catch broken files
and record its size) and written straight away, so memory stays flat for MS1M-sized folders.
The layout is InsightFace's (see :mod:`.recordio`): key 0 header ``[first identity key, end]``,
keys ``1..n`` images with their identity as a scalar label (sorted sub-folder names ->
0..K-1, the same labels the image-folder loader gives), then one record per identity.
Image bytes are stored as they are (no re-encoding), so packing is lossless.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from facenas.errors import DataFormatError

log = logging.getLogger(__name__)


def pack_image_folder(image_dir: str | os.PathLike, out_dir: str | os.PathLike, check: bool = True,
                      name: str = "train") -> dict[str, Any]:
    """Write ``<out_dir>/<name>.rec/.idx`` and ``property``; returns a summary dict."""
    from facenas.adapters.insightface.dataset import ImageFolderDataset
    from facenas.adapters.insightface.recordio import IRHeader, IndexedRecordIO, decode_image, pack
    from facenas.utils.progress import Progress

    ds = ImageFolderDataset(image_dir, flip=False)
    out = Path(out_dir)
    n = len(ds.samples)
    first_id_key = n + 1
    ranges: dict[int, list[int]] = {}
    sizes: dict[tuple[int, int], int] = {}
    prog = Progress(n, "packing images", unit="img", interval=10.0)
    with IndexedRecordIO(out / f"{name}.idx", out / f"{name}.rec", "w") as rec:
        rec.write_idx(0, pack(IRHeader(0, [float(first_id_key), float(first_id_key + ds.num_classes)], 0, 0), b""))
        for key, (path, label) in enumerate(ds.samples, start=1):
            data = Path(path).read_bytes()
            if check or not sizes:
                img = decode_image(data, path)
                shape = (int(img.shape[0]), int(img.shape[1]))
                sizes[shape] = sizes.get(shape, 0) + 1
            rec.write_idx(key, pack(IRHeader(0, float(label), key, 0), data))
            ranges.setdefault(label, [key, key + 1])[1] = key + 1
            prog.update()
        for j in range(ds.num_classes):
            if j not in ranges:  # cannot happen: ImageFolderDataset keeps only folders with images
                raise DataFormatError(str(image_dir), f"identity {ds.classes[j]!r} has no images")
            a, b = ranges[j]
            rec.write_idx(first_id_key + j, pack(IRHeader(0, [float(a), float(b)], 0, 0), b""))
    size = max(sizes, key=sizes.get)
    if len(sizes) > 1:
        log.warning("images of %d different sizes (%s); property records the most common, %dx%d", len(sizes),
                    ", ".join(f"{h}x{w}: {c}" for (h, w), c in sorted(sizes.items())), size[0], size[1])
    (out / "property").write_text(f"{ds.num_classes},{size[0]},{size[1]}")
    prog.close()
    return {"out_dir": str(out), "images": n, "identities": ds.num_classes, "image_size": list(size),
            "checked": bool(check), "image_sizes": {f"{h}x{w}": c for (h, w), c in sorted(sizes.items())}}
