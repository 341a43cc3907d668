"""Inputs of the golden RecordIO files: the records ``make_golden.py`` writes with real MXNet.

Imported both by ``make_golden.py`` (run once with mxnet 1.9.1 in a throwaway venv) and by the
tests (which rebuild the files with facenas's writer and compare bytes), so it depends only on
numpy and OpenCV. Images come from integer formulas, identical on every platform.
"""
from __future__ import annotations

import struct

import numpy as np

MAGIC = struct.pack("<I", 0xCED7230A)


def pattern_image(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    """A deterministic BGR uint8 test pattern."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.int64)
    img = np.stack([(xx * (5 + seed)) % 256, (yy * (7 + 2 * seed)) % 256, ((xx * yy + 31 * seed) // 3) % 256], -1)
    return img.astype(np.uint8)


def jpeg_with_magic_comment(jpeg: bytes, header_bytes: int) -> bytes:
    """Insert a JPEG comment (COM) segment holding the RecordIO magic twice, 4-byte aligned in the record.

    ``header_bytes`` is what precedes the JPEG in the record (image header + array label), so
    the magic lands on offsets the RecordIO writer checks: the record must be split in three.
    The result still decodes (decoders skip COM segments).
    """
    prefix = header_bytes + 2 + 4  # SOI, COM marker + length
    pad = (-prefix) % 4
    body = b"x" * pad + MAGIC + b"comment!" + MAGIC + b"end"
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


#: payloads of golden_misc.rec: (key, header (flag, label, id, id2) or None for a raw record, payload)
def misc_records() -> list[tuple[int, tuple | None, bytes]]:
    return [
        (10, None, b""),
        (11, None, b"a"),
        (12, None, b"abcdefg"),
        (13, None, MAGIC),
        (14, None, MAGIC + b"tail"),
        (15, None, b"head" + MAGIC),
        (16, None, MAGIC + MAGIC + b"12" + MAGIC + b"x" + MAGIC),  # consecutive, aligned and unaligned
        (17, None, bytes(range(256)) * 3),
        (3, (0, 2.5, 7, 9), b"scalar label"),
        (4, (0, [1.0, -2.0, 3.25], 0, 0), b"array label"),
        (5, (0, [0.5] * 5, 1, 2), MAGIC + b"after a 24+20 byte prefix"),
        (1, (0, 0.0, 0, 0), b""),
    ]
