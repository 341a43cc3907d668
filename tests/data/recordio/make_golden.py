"""Write the golden RecordIO files with real MXNet 1.9.1 (run once, outside facenas's environment).

    python3 -m venv /tmp/mxenv
    /tmp/mxenv/bin/pip install mxnet==1.9.1 numpy==1.23.5 opencv-python==4.8.1.78
    /tmp/mxenv/bin/python tests/data/recordio/make_golden.py

Writes, next to this script:

- ``insightface/train.rec|idx``: InsightFace's layout made with ``mx.recordio.pack`` /
  ``pack_img`` / ``MXIndexedRecordIO``: key 0 header (label [first identity key, end]), four
  images (JPEG and PNG via ``pack_img``, one JPEG carrying the magic number in a comment
  segment so its record is split, one with an array label), three identity records;
- ``misc.rec|idx``: framing edge cases (empty, odd lengths, magic at start/end/consecutive/
  unaligned, scalar and array labels, keys out of order);
- ``manifest.json``: what MXNet's own reader returns for every key (header, payload length and
  MD5, and the MD5 of ``mx.image.imdecode``'s pixels for images).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import cv2
import mxnet as mx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_inputs import jpeg_with_magic_comment, misc_records, pattern_image  # noqa: E402

IR = mx.recordio.IRHeader


def insightface_records() -> list[tuple[int, bytes]]:
    images = [
        mx.recordio.pack_img(IR(0, 0.0, 1, 0), pattern_image(0), quality=95, img_fmt=".jpg"),
        mx.recordio.pack_img(IR(0, 0.0, 2, 0), pattern_image(1), quality=3, img_fmt=".png"),
    ]
    ok, buf = cv2.imencode(".jpg", pattern_image(2), [cv2.IMWRITE_JPEG_QUALITY, 90])
    label = [1.0, 0.5]
    images.append(mx.recordio.pack(IR(0, label, 3, 0), jpeg_with_magic_comment(buf.tobytes(), 24 + 4 * len(label))))
    images.append(mx.recordio.pack_img(IR(0, 2.0, 4, 0), pattern_image(3), quality=75, img_fmt=".jpg"))
    first = len(images) + 1
    records = [(0, mx.recordio.pack(IR(0, [float(first), float(first + 3)], 0, 0), b""))]
    records += [(k, s) for k, s in enumerate(images, start=1)]
    for j, (a, b) in enumerate([(1, 3), (3, 4), (4, 5)]):
        records.append((first + j, mx.recordio.pack(IR(0, [float(a), float(b)], 0, 0), b"")))
    return records


def describe(key: int, record: bytes, is_image: bool, has_header: bool = True) -> dict:
    out = {"key": key, "record_len": len(record), "record_md5": hashlib.md5(record).hexdigest()}
    if not has_header:
        return out
    header, payload = mx.recordio.unpack(record)
    label = header.label.tolist() if isinstance(header.label, np.ndarray) else float(header.label)
    out.update({"flag": int(header.flag), "label": label, "id": int(header.id), "id2": int(header.id2),
           "payload_len": len(payload), "payload_md5": hashlib.md5(payload).hexdigest()})
    if is_image:
        img = mx.image.imdecode(payload).asnumpy()  # RGB
        out["image_shape"] = list(img.shape)
        out["image_md5"] = hashlib.md5(np.ascontiguousarray(img).tobytes()).hexdigest()
    return out


def main() -> None:
    manifest = {"mxnet": mx.__version__, "numpy": np.__version__, "opencv": cv2.__version__}
    os.makedirs(os.path.join(HERE, "insightface"), exist_ok=True)
    files = {
        "insightface": (os.path.join(HERE, "insightface", "train.idx"), os.path.join(HERE, "insightface", "train.rec"),
                        insightface_records()),
        "misc": (os.path.join(HERE, "misc.idx"), os.path.join(HERE, "misc.rec"),
                 [(k, payload if h is None else mx.recordio.pack(IR(*h), payload)) for k, h, payload in misc_records()]),
    }
    for name, (idx, rec, records) in files.items():
        writer = mx.recordio.MXIndexedRecordIO(idx, rec, "w")
        for key, record in records:
            writer.write_idx(key, record)
        writer.close()
        reader = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
        raw_keys = {k for k, h, _ in misc_records() if h is None} if name == "misc" else set()
        described = []
        for key, _ in records:
            got = reader.read_idx(key)
            is_image = name == "insightface" and 1 <= key <= 4
            described.append(describe(key, got, is_image, key not in raw_keys))
        reader.close()
        manifest[name] = described
    with open(os.path.join(HERE, "insightface", "property"), "w") as fh:
        fh.write("3,24,32")
    with open(os.path.join(HERE, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")
    print(json.dumps({k: len(v) if isinstance(v, list) else v for k, v in manifest.items()}))


if __name__ == "__main__":
    main()
