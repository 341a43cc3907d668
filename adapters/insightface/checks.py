"""The one validation layer of the data readers: header fields, labels, ``property``, image sizes.

Every reader (``.rec`` / ``.idx`` layout, training datasets, ``.bin`` sets) checks what a file
*claims* here, before it allocates or decodes anything that depends on the claim:

- key ranges of InsightFace's header and identity records against the index (a header saying
  identities end at key 3e38 must not become a 3e38-step loop, nor ``list(range(1, 1e8))``);
- labels: finite, whole numbers, inside ``[0, num_classes)``;
- ``property`` (``num_classes,height,width``);
- image dimensions, read from the encoded header (JPEG SOF, PNG IHDR, BMP, GIF, WebP, PNM) and
  capped at :data:`MAX_IMAGE_PIXELS`, so a 390 KB PNG claiming 20000x20000 is refused before the
  decoder allocates 1.2 GB;
- the decoded size of a whole ``.bin`` against its file size (one JPEG referenced 60,000 times
  through the pickle memo costs 3 bytes a reference in the file and 37 KB a decoded copy).

Each failure is a :class:`facenas.errors.DataFormatError` naming the file, record and field.
"""
from __future__ import annotations

import dataclasses
import math
import os
import struct
from typing import Any

from facenas.errors import DataFormatError

#: Most pixels an image may have before it is decoded: 4096x4096 (aligned faces are 112x112; a
#: 4096x4096 RGB image decodes to 48 MiB).
MAX_IMAGE_PIXELS = 4096 * 4096
#: Largest side ``property`` may declare (the same cap as the images).
MAX_IMAGE_SIDE = 4096
#: Decoded pixels a ``.bin`` may hold per byte of file, beyond :data:`BIN_DECODED_FLOOR`. Honest
#: sets compress 3-20x (lfw.bin: 6.9x; a flat grey 112x112 JPEG: 60x); 256x leaves room for
#: flat synthetic images and refuses memo amplification (thousands of references to one image).
BIN_DECODED_PER_FILE_BYTE = 256
#: Any ``.bin`` may decode to this many bytes whatever its file size (small test sets).
BIN_DECODED_FLOOR = 256 << 20
#: How many times a ``.bin`` may reference the same image object on average (pickle memo). Honest
#: writers store each image of each pair (ratio 1); one that reuses an image object in a few pairs
#: (facenas's synthetic sets) stays near 1-2; a memo bomb repeats one image thousands of times.
BIN_MAX_REFERENCES_PER_IMAGE = 8

_FIX_REPACK = "rebuild it with `facenas data pack` (or InsightFace's own tools)"


# -- image headers ------------------------------------------------------------------------------
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_dims(data: bytes) -> tuple[int, int] | None:
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None  # not at a marker: the decoder will refuse the file
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return None
        marker = data[pos]
        pos += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        if marker == 0xD9 or pos + 2 > n:
            return None
        length = struct.unpack_from(">H", data, pos)[0]
        if marker in _SOF_MARKERS:
            if pos + 7 > n:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 3)
            return int(width), int(height)
        pos += length
    return None


def _pnm_dims(data: bytes) -> tuple[int, int] | None:
    fields: list[int] = []
    for line in data[2:256].split(b"\n"):
        line = line.split(b"#", 1)[0]
        for tok in line.split():
            if not tok.isdigit():
                return None
            fields.append(int(tok))
            if len(fields) == 2:
                return fields[0], fields[1]
    return None


def image_dims(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded image's header, or ``None`` for a format not parsed here.

    Reads JPEG (the first SOF marker), PNG (IHDR), BMP, GIF, WebP (VP8, VP8L, VP8X) and PNM
    headers only; nothing is decoded.
    """
    if data[:2] == b"\xff\xd8":
        return _jpeg_dims(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack_from(">II", data, 16)
        return int(width), int(height)
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack_from("<ii", data, 18)
        return abs(int(width)), abs(int(height))
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack_from("<HH", data, 6)
        return int(width), int(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            height = int.from_bytes(data[27:30], "little") + 1
            return width, height
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8 ":
            width, height = struct.unpack_from("<HH", data, 26)
            return int(width) & 0x3FFF, int(height) & 0x3FFF
        return None
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        return _pnm_dims(data)
    return None


def check_image_bytes(data: bytes, where: str) -> tuple[int, int] | None:
    """Refuse an empty payload or one whose header claims more than :data:`MAX_IMAGE_PIXELS`.

    Returns the header's ``(width, height)`` (``None`` where the format is not parsed here).
    ``where`` names the file and record (``train.rec record 5``).
    """
    if not data:
        raise DataFormatError(where, "the image payload is empty (0 bytes)",
                              "the record or file lost its image; re-create it from the source images")
    dims = image_dims(data)
    if dims is None:
        return None
    width, height = dims
    if width <= 0 or height <= 0:
        raise DataFormatError(where, f"the image header says {width}x{height} pixels",
                              "the image is corrupt; re-create it from the source images")
    if width * height > MAX_IMAGE_PIXELS:
        raise DataFormatError(where, f"the image header says {width}x{height} = {width * height:,} pixels, more than "
                                     f"the {MAX_IMAGE_PIXELS:,} (4096x4096) a face image may have; refused before "
                                     "decoding", "align and resize faces (112x112) before packing them")
    return dims


# -- numbers in headers -------------------------------------------------------------------------
def whole_number(value: Any, where: str, field: str, fix: str | None = None) -> int:
    """``value`` as an int when it is a finite whole number, else a one-line error."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(where, f"{field} is {value!r}, not a number", fix) from None
    if not math.isfinite(v):
        raise DataFormatError(where, f"{field} is {v}, not a finite number", fix or _FIX_REPACK)
    if not v.is_integer():
        raise DataFormatError(where, f"{field} is {v!r}, not a whole number", fix or _FIX_REPACK)
    return int(v)


def check_label(value: Any, where: str, num_classes: int | None = None, expected: int | None = None) -> int:
    """An identity label: a finite whole number in ``[0, num_classes)`` (and ``== expected`` when given)."""
    label = whole_number(value, where, "the label", "labels are identity numbers 0..K-1; " + _FIX_REPACK)
    if label < 0 or (num_classes is not None and label >= num_classes):
        span = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise DataFormatError(where, f"label {label} is outside the identities {span}"
                                     + (f" ({num_classes} identities)" if num_classes is not None else ""),
                              "labels are identity numbers 0..K-1 as `property` / the identity records say; "
                              + _FIX_REPACK)
    if expected is not None and label != expected:
        raise DataFormatError(where, f"label {label} but the identity records put this key in identity {expected}",
                              "the labels and the identity records disagree; " + _FIX_REPACK)
    return label


def key_span(values: Any, where: str, field: str, low: int, high: int, why: str = "") -> tuple[int, int]:
    """``(a, b)`` from a two-value header label with ``low <= a <= b <= high``, else a one-line error."""
    a = whole_number(values[0], where, f"the start of {field}", _FIX_REPACK)
    b = whole_number(values[1], where, f"the end of {field}", _FIX_REPACK)
    if not (low <= a <= b <= high):
        def fmt(v: int) -> str:
            return f"{float(v):.4g}" if abs(v) >= 1 << 53 else str(v)

        raise DataFormatError(where, f"says {field} are keys [{fmt(a)}, {fmt(b)}), which does not fit in "
                                     f"[{low}, {fmt(high)}]{why}",
                              "the header does not belong to this index, or is damaged; " + _FIX_REPACK)
    return a, b


# -- property -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Property:
    """InsightFace's ``property`` file: ``num_classes,height,width``."""

    num_classes: int
    height: int
    width: int


def read_property(path: str | os.PathLike) -> Property | None:
    """Parse ``property`` when the file exists (``None`` when it does not)."""
    source = os.fspath(path)
    if not os.path.isfile(source):
        return None
    with open(source, "rb") as fh:
        raw = fh.read(4097)
    fix = "property holds one line 'num_classes,height,width', e.g. '299,112,112'"
    if len(raw) > 4096:
        raise DataFormatError(source, "is larger than 4 KB; expected one line 'num_classes,height,width'", fix)
    text = raw.decode("ascii", errors="replace").strip()
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise DataFormatError(source, f"holds {text[:60]!r}, expected 'num_classes,height,width' (three whole "
                                      "numbers)", fix)
    num_classes, height, width = (int(p) for p in parts)
    if num_classes < 1 or not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise DataFormatError(source, f"says {num_classes} identities of {height}x{width} images; expected >= 1 "
                                      f"identity and sides 1..{MAX_IMAGE_SIDE}", fix)
    return Property(num_classes, height, width)


# -- .bin decoded size --------------------------------------------------------------------------
def check_bin_references(source: str, num_images: int, distinct: int) -> None:
    """Refuse a ``.bin`` whose pickle repeats references to the same images (memo amplification).

    ``distinct`` is how many different image objects the pickle holds.
    """
    if num_images > BIN_MAX_REFERENCES_PER_IMAGE * distinct + 16:
        raise DataFormatError(source, f"its {num_images} images are only {distinct} distinct byte strings, each "
                                      f"referenced {num_images / max(1, distinct):.0f} times on average through the "
                                      f"pickle memo (at most {BIN_MAX_REFERENCES_PER_IMAGE}); refused before decoding",
                              "a .bin stores every image of every pair; rebuild it with `facenas data pairs`")


def check_bin_decoded_size(source: str, num_images: int, dims: tuple[int, int] | None, file_size: int) -> None:
    """Refuse a ``.bin`` whose images would decode to far more memory than the file could encode.

    ``dims`` is image 0's ``(width, height)`` from its header (all images must share it).
    """
    if dims is None:
        return
    width, height = dims
    decoded = num_images * width * height * 3
    limit = max(BIN_DECODED_FLOOR, BIN_DECODED_PER_FILE_BYTE * file_size)
    if decoded > limit:
        raise DataFormatError(source, f"{num_images} images of {width}x{height} would decode to {decoded / 2**20:,.0f} "
                                      f"MiB from a {file_size:,}-byte file (more than {BIN_DECODED_PER_FILE_BYTE}x "
                                      "its size); refused before decoding",
                              "a .bin stores every image of every pair; rebuild it with `facenas data pairs`")
