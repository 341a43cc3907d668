"""Byte compatibility with real MXNet 1.9.1: golden files made by tests/data/recordio/make_golden.py.

Our writer must reproduce MXNet's ``.rec``/``.idx`` byte for byte from the same inputs, and our
reader must return what MXNet's reader returned (recorded in ``manifest.json``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from facenas.adapters.insightface import recordio as rio
from facenas.adapters.insightface.dataset import MXFaceDataset

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "recordio"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())


def _inputs():
    spec = importlib.util.spec_from_file_location("golden_inputs", GOLDEN / "golden_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _insightface_records(gi) -> list[tuple[int, bytes]]:
    """The same calls make_golden.py makes, with facenas's pack / pack_img instead of mxnet's."""
    import cv2

    images = [
        rio.pack_img((0, 0.0, 1, 0), gi.pattern_image(0), quality=95, img_fmt=".jpg"),
        rio.pack_img((0, 0.0, 2, 0), gi.pattern_image(1), quality=3, img_fmt=".png"),
    ]
    ok, buf = cv2.imencode(".jpg", gi.pattern_image(2), [cv2.IMWRITE_JPEG_QUALITY, 90])
    label = [1.0, 0.5]
    images.append(rio.pack((0, label, 3, 0), gi.jpeg_with_magic_comment(buf.tobytes(), 24 + 4 * len(label))))
    images.append(rio.pack_img((0, 2.0, 4, 0), gi.pattern_image(3), quality=75, img_fmt=".jpg"))
    first = len(images) + 1
    records = [(0, rio.pack((0, [float(first), float(first + 3)], 0, 0), b""))]
    records += [(k, s) for k, s in enumerate(images, start=1)]
    for j, (a, b) in enumerate([(1, 3), (3, 4), (4, 5)]):
        records.append((first + j, rio.pack((0, [float(a), float(b)], 0, 0), b"")))
    return records


def _misc_records(gi) -> list[tuple[int, bytes]]:
    return [(k, payload if h is None else rio.pack(h, payload)) for k, h, payload in gi.misc_records()]


def _write(tmp_path: Path, name: str, records) -> tuple[Path, Path]:
    idx, rec = tmp_path / f"{name}.idx", tmp_path / f"{name}.rec"
    with rio.IndexedRecordIO(idx, rec, "w") as writer:
        for key, record in records:
            writer.write_idx(key, record)
    return idx, rec


@pytest.mark.parametrize("name", ["insightface", "misc"])
def test_writer_reproduces_mxnet_bytes(tmp_path, name):
    gi = _inputs()
    records = _insightface_records(gi) if name == "insightface" else _misc_records(gi)
    # the inputs themselves are the records MXNet wrote (pack / pack_img agree byte for byte)
    assert [hashlib.md5(r).hexdigest() for _, r in records] == [m["record_md5"] for m in MANIFEST[name]]
    idx, rec = _write(tmp_path, name, records)
    golden = GOLDEN / ("insightface/train" if name == "insightface" else "misc")
    assert rec.read_bytes() == golden.with_suffix(".rec").read_bytes()
    assert idx.read_bytes() == golden.with_suffix(".idx").read_bytes()


def test_golden_files_exercise_record_splitting():
    raw = (GOLDEN / "insightface" / "train.rec").read_bytes()
    flags = []
    pos = 0
    while pos < len(raw):
        magic, lrec = struct.unpack_from("<II", raw, pos)
        assert magic == rio.MAGIC
        flags.append(lrec >> 29)
        pos += 8 + (((lrec & ((1 << 29) - 1)) + 3) & ~3)
    assert flags.count(1) == 1 and flags.count(2) == 1 and flags.count(3) == 1  # image 3 is split in three
    misc = (GOLDEN / "misc.rec").read_bytes()
    assert misc.count(struct.pack("<I", rio.MAGIC)) > len(MANIFEST["misc"])  # continuation headers


@pytest.mark.parametrize("name", ["insightface", "misc"])
def test_reader_returns_what_mxnet_returned(name):
    base = GOLDEN / ("insightface/train" if name == "insightface" else "misc")
    reader = rio.IndexedRecordIO(base.with_suffix(".idx"), base.with_suffix(".rec"))
    for entry in MANIFEST[name]:
        record = reader.read_idx(entry["key"])
        assert len(record) == entry["record_len"] and hashlib.md5(record).hexdigest() == entry["record_md5"]
        if "flag" not in entry:
            continue
        header, payload = rio.unpack(record)
        label = header.label.tolist() if isinstance(header.label, np.ndarray) else header.label
        assert (header.flag, label, header.id, header.id2) == (entry["flag"], entry["label"], entry["id"], entry["id2"])
        assert hashlib.md5(payload).hexdigest() == entry["payload_md5"]
        if "image_md5" in entry:  # OpenCV decodes to the same pixels as mx.image.imdecode
            img = rio.decode_image(payload)
            assert list(img.shape) == entry["image_shape"]
            assert hashlib.md5(img.tobytes()).hexdigest() == entry["image_md5"]
    assert [r for _, r in rio.iter_records(base.with_suffix(".rec"))] == [
        reader.read_idx(e["key"]) for e in MANIFEST[name]]


def test_mxnet_written_insightface_folder_loads():
    ds = MXFaceDataset(GOLDEN / "insightface", flip=False)
    assert len(ds) == 4 and ds.num_classes == 3
    assert [ds.read(i)[1] for i in range(4)] == [0, 0, 1, 2]  # array label -> its first value
    x, y = ds[2]
    assert tuple(x.shape) == (3, 24, 32) and int(y) == 1
