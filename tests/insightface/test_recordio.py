"""Pure-Python MXNet RecordIO: framing, magic splitting, headers, InsightFace layout, real data."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from facenas.adapters.insightface import recordio as rio
from facenas.errors import DataFormatError

MAGIC = struct.pack("<I", rio.MAGIC)


def test_unsplit_record_framing_and_padding():
    enc = rio.encode_record(b"abcde")
    assert enc[:4] == MAGIC
    assert struct.unpack("<I", enc[4:8])[0] == 5  # flag 0, length 5
    assert enc[8:] == b"abcde\0\0\0"
    assert len(rio.encode_record(b"abcd")) == 12


def test_magic_inside_payload_splits_record(tmp_path):
    payload = b"AAAA" + MAGIC + b"BBBBBBBB" + MAGIC + b"CC"
    enc = rio.encode_record(payload)
    heads = []
    pos = 0
    while pos < len(enc):
        magic, lrec = struct.unpack_from("<II", enc, pos)
        assert magic == rio.MAGIC
        flag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        heads.append((flag, length))
        pos += 8 + ((length + 3) & ~3)
    assert heads == [(1, 4), (2, 8), (3, 2)]
    # an unaligned occurrence does not split
    assert rio.encode_record(b"A" + MAGIC + b"AAA")[4:8] == struct.pack("<I", 8)
    rec = tmp_path / "x.rec"
    with rio.IndexedRecordIO(tmp_path / "x.idx", rec, "w") as w:
        w.write_idx(7, payload)
        w.write_idx(8, b"tail")
    r = rio.IndexedRecordIO(tmp_path / "x.idx", rec)
    assert r.read_idx(7) == payload and r.read_idx(8) == b"tail"
    assert [p for _, p in rio.iter_records(rec)] == [payload, b"tail"]


def test_pack_unpack_scalar_and_array_labels():
    s = rio.pack(rio.IRHeader(0, 3.0, 5, 0), b"img")
    h, p = rio.unpack(s)
    assert (h.flag, h.label, h.id, h.id2, p) == (0, 3.0, 5, 0, b"img")
    s = rio.pack((0, [1.5, 2.5, 3.5], 1, 2), b"xyz")
    assert len(s) == 24 + 12 + 3
    h, p = rio.unpack(s)
    assert h.flag == 3 and h.label.tolist() == [1.5, 2.5, 3.5] and p == b"xyz"
    with pytest.raises(DataFormatError, match="shorter than the 24-byte"):
        rio.unpack(b"short")


def test_pack_img_round_trip():
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = 255
    h, p = rio.unpack(rio.pack_img((0, 1.0, 0, 0), img, quality=100, img_fmt=".png"))
    assert np.array_equal(rio.decode_image(p, to_rgb=False), img)


def test_insightface_layout_round_trip(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    images, labels = [], []
    for label in (0, 0, 1, 2, 2, 2):
        ok, buf = cv2.imencode(".png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
        images.append(buf.tobytes())
        labels.append(label)
    info = rio.write_insightface_rec(tmp_path, images, labels, (8, 8))
    assert info == {"images": 6, "identities": 3}
    r = rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec")
    h0, _ = rio.unpack(r.read_idx(0))
    assert h0.flag == 2 and h0.label.tolist() == [7.0, 10.0]
    layout = rio.read_layout(r)
    assert layout.image_keys.tolist() == [1, 2, 3, 4, 5, 6]
    assert layout.identity_ranges == {7: (1, 3), 8: (3, 4), 9: (4, 7)}
    for key, (data, label) in zip(layout.image_keys, zip(images, labels)):
        h, p = rio.unpack(r.read_idx(key))
        assert p == data and h.label == label and h.id == key  # lossless
    assert (tmp_path / "property").read_text() == "3,8,8"


@pytest.mark.real_data
def test_reads_real_insightface_rec_and_rewrites_its_bytes(celeba299):
    r = rio.IndexedRecordIO(celeba299 / "train.idx", celeba299 / "train.rec")
    layout = rio.read_layout(r)
    assert len(layout.image_keys) == 6284 and len(layout.identity_ranges) == 299
    raw = (celeba299 / "train.rec").read_bytes()
    for key in [0, 1, 2, 3000, 6284, 6285, 6583]:
        offset = r.idx[key]
        enc = rio.encode_record(r.read_idx(key))
        assert raw[offset:offset + len(enc)] == enc  # our writer reproduces MXNet's bytes
    h, p = rio.unpack(r.read_idx(1))
    assert rio.decode_image(p).shape == (112, 112, 3)


def test_bad_rec_inputs(tmp_path):
    with rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec", "w") as w:
        w.write_idx(0, rio.pack((0, 1.0, 0, 0), b"x" * 100))
        w.write_idx(1, rio.pack((0, 2.0, 0, 0), b"y" * 100))
    raw = (tmp_path / "train.rec").read_bytes()
    # truncated .rec
    (tmp_path / "train.rec").write_bytes(raw[:-20])
    r = rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec")
    with pytest.raises(DataFormatError, match=r"record 1 .*cut off.*truncated"):
        r.read_idx(1)
    # wrong magic
    (tmp_path / "train.rec").write_bytes(b"\0\0\0\0" + raw[4:])
    r = rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec")
    with pytest.raises(DataFormatError, match="wrong magic number 0x00000000"):
        r.read_idx(0)
    # .idx offset past the end
    (tmp_path / "train.rec").write_bytes(raw)
    (tmp_path / "train.idx").write_text("0\t0\n1\t99999\n")
    with pytest.raises(DataFormatError, match="key 1 has offset 99999, past the end"):
        rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec")
    # missing key
    (tmp_path / "train.idx").write_text("0\t0\n")
    r = rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec")
    with pytest.raises(DataFormatError, match="no record with key 5"):
        r.read_idx(5)
    # malformed idx line
    (tmp_path / "train.idx").write_text("0 zero\n")
    with pytest.raises(DataFormatError, match="line 1"):
        rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec")


def test_header_promises_missing_image_keys(tmp_path):
    with rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec", "w") as w:
        w.write_idx(0, rio.pack((0, [4.0, 5.0], 0, 1), b""))
        w.write_idx(1, rio.pack((0, 0.0, 1, 0), b"a"))
    r = rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec")
    with pytest.raises(DataFormatError, match=r"keys 1..3 but 3 key\(s\) are missing from the index \(first: \[2, 3, 4\]\)"):
        rio.read_layout(r)
