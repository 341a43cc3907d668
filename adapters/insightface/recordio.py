"""MXNet indexed RecordIO, read and written in pure Python, byte-compatible with ``mxnet.recordio``.

InsightFace stores training sets (MS1M, Glint360K, WebFace, ...) as ``train.rec`` + ``train.idx``
written by MXNet. This module reads and writes the same bytes without MXNet (which cannot be
imported next to numpy 2):

- **Record framing** (dmlc-core ``RecordIOWriter``): every record starts with the magic
  ``0xced7230a`` and a 32-bit word ``cflag << 29 | length``, followed by the payload padded to a
  multiple of 4 bytes. Where the magic number occurs (4-byte aligned) inside a payload, the writer
  splits the payload there and drops those 4 bytes: parts are flagged 1 (first), 2 (middle) and 3
  (last), and the reader re-inserts the magic between parts. Unsplit records have flag 0.
- **Index** (``MXIndexedRecordIO``): a text file of ``key\\toffset`` lines.
- **Image record header** (``mxnet.recordio.pack`` / ``unpack``): ``struct 'IfQQ'`` = flag, label,
  id, id2. A non-scalar label is stored as ``flag`` float32 values right after the header (and
  the ``label`` field is 0).
- **InsightFace layout**: key 0 is a header record whose label is ``[first identity key, end]``
  (flag 2); keys ``1 .. first-1`` are images with a scalar identity label; keys ``first .. end-1``
  are one record per identity whose label is ``[first image key, end image key)``.

Every malformed input raises :class:`facenas.errors.DataFormatError` naming the file and record.
"""
from __future__ import annotations

import dataclasses
import logging
import numbers
import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping, Sequence

import numpy as np

from facenas.adapters.insightface.checks import MAX_IMAGE_PIXELS, check_image_bytes, check_label, key_span
from facenas.errors import DataFormatError

log = logging.getLogger(__name__)

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
IR_SIZE = _IR.size  # 24
_LENGTH_MASK = (1 << 29) - 1
MAX_RECORD = 1 << 29


@dataclasses.dataclass
class IRHeader:
    """The image-record header of ``mxnet.recordio`` (``flag, label, id, id2``).

    ``label`` is a float, or a float32 array when ``flag > 0`` (its length).
    """

    flag: int
    label: float | np.ndarray
    id: int = 0
    id2: int = 0

    def __iter__(self):  # allow tuple-unpacking like mxnet's namedtuple
        return iter((self.flag, self.label, self.id, self.id2))


# -- payload packing (mxnet.recordio.pack / unpack / pack_img) -----------------------------------
def pack(header: IRHeader | Sequence, payload: bytes) -> bytes:
    """Prefix ``payload`` with an image-record header, exactly as ``mxnet.recordio.pack``."""
    flag, label, id_, id2 = tuple(header)
    if isinstance(label, numbers.Number):
        flag, prefix = 0, b""
    else:
        arr = np.asarray(label, dtype=np.float32)
        flag, label, prefix = int(arr.size), 0, arr.tobytes()
    return _IR.pack(int(flag), float(label), int(id_), int(id2)) + prefix + bytes(payload)


def unpack(record: bytes, source: str = "<record>") -> tuple[IRHeader, bytes]:
    """Split a record into its header and payload, as ``mxnet.recordio.unpack``."""
    if len(record) < IR_SIZE:
        raise DataFormatError(source, f"record of {len(record)} bytes is shorter than the {IR_SIZE}-byte image-record header")
    flag, label, id_, id2 = _IR.unpack_from(record, 0)
    payload = record[IR_SIZE:]
    if flag > 0:
        need = 4 * flag
        if len(payload) < need:
            raise DataFormatError(source, f"header says {flag} float labels ({need} bytes) but only {len(payload)} bytes follow")
        return IRHeader(flag, np.frombuffer(payload, np.float32, flag).copy(), id_, id2), payload[need:]
    return IRHeader(flag, float(label), id_, id2), payload


def pack_img(header: IRHeader | Sequence, img: np.ndarray, quality: int = 95, img_fmt: str = ".jpg") -> bytes:
    """Encode a BGR ``img`` with OpenCV and pack it, as ``mxnet.recordio.pack_img``."""
    import cv2

    params: list[int] | None = None
    if img_fmt.upper() in (".JPG", ".JPEG"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif img_fmt.upper() == ".PNG":
        params = [cv2.IMWRITE_PNG_COMPRESSION, quality]
    ok, buf = cv2.imencode(img_fmt, img, params) if params else cv2.imencode(img_fmt, img)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {img.shape} as {img_fmt}")
    return pack(header, buf.tobytes())


def decode_image(payload: bytes, source: str = "<record>", to_rgb: bool = True) -> np.ndarray:
    """Decode JPEG/PNG bytes to an ``HxWx3`` uint8 array (RGB unless ``to_rgb=False``).

    The payload is checked first (:func:`.checks.check_image_bytes`): an empty payload or a header
    claiming more than 4096x4096 pixels is refused before OpenCV allocates anything.
    """
    check_image_bytes(payload, source)
    _cap_opencv_pixels()
    import cv2

    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10: the decoder writes RGB directly
    flag = rgb_flag if to_rgb and rgb_flag is not None else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), flag)
    except cv2.error as exc:  # e.g. a format whose header is not parsed above, too large for OpenCV's own cap
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(source, f"payload of {len(payload)} bytes could not be decoded ({first[:160]})",
                              "re-create the image from its source") from None
    if img is None:
        raise DataFormatError(source, f"payload of {len(payload)} bytes is not a decodable image (expected JPEG or PNG)")
    if to_rgb and rgb_flag is None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def _cap_opencv_pixels() -> None:
    """OpenCV's own pixel cap (read once, at its first decode) for formats whose header we do not parse."""
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))


# -- record framing -------------------------------------------------------------------------------
def encode_record(payload: bytes) -> bytes:
    """The bytes dmlc-core's ``RecordIOWriter::WriteRecord`` writes for ``payload``."""
    n = len(payload)
    if n >= MAX_RECORD:
        raise ValueError(f"RecordIO records must be shorter than 2^29 bytes, got {n}")
    out = bytearray()
    mv = memoryview(payload)
    lower = n & ~3  # dmlc checks the aligned words payload[i:i+4] for i < lower
    dptr = 0
    pos = payload.find(_MAGIC_BYTES, 0, lower)
    while pos >= 0:
        if pos % 4 == 0:
            out += _MAGIC_BYTES + struct.pack("<I", ((1 if dptr == 0 else 2) << 29) | (pos - dptr))
            out += mv[dptr:pos]
            dptr = pos + 4
            pos = payload.find(_MAGIC_BYTES, pos + 4, lower)
        else:
            pos = payload.find(_MAGIC_BYTES, pos + 1, lower)
    out += _MAGIC_BYTES + struct.pack("<I", ((3 if dptr else 0) << 29) | (n - dptr))
    out += mv[dptr:]
    out += b"\0" * (-n % 4)
    return bytes(out)


#: bytes read past a record header in the same call (most face JPEGs are smaller: one read per record)
_READ_AHEAD = 1 << 14


def read_record_from(read: Callable[[int, int], bytes], offset: int, source: str, key: object = None,
                     limit: int | None = None) -> bytes:
    """Read the (possibly split) record starting at byte ``offset``; ``read(pos, n)`` returns file bytes.

    ``limit``: the offset the record must not run past (the next indexed record's start).
    """
    return _read_record(read, offset, source, key, limit)[0]


def _read_record(read: Callable[[int, int], bytes], offset: int, source: str, key: object = None,
                 limit: int | None = None) -> tuple[bytes, int]:
    """The record at ``offset`` and the offset just past it."""
    where = f"record {key} at offset {offset}" if key is not None else f"record at offset {offset}"
    parts: list[bytes] = []
    pos = offset
    while True:
        chunk = read(pos, 8 + _READ_AHEAD)
        if len(chunk) < 8:
            raise DataFormatError(source, f"{where}: file ends inside a record header (truncated .rec?)",
                                  "re-copy the file or rebuild it with `facenas data pack`")
        magic, lrec = _HEADER.unpack_from(chunk, 0)
        if magic != MAGIC:
            raise DataFormatError(source, f"{where}: wrong magic number 0x{magic:08x} (expected 0x{MAGIC:08x}); "
                                          "not a RecordIO file, or the .idx offset does not point at a record",
                                  "check that the .idx belongs to this .rec")
        cflag, length = lrec >> 29, lrec & _LENGTH_MASK
        if cflag > 3:  # 3 bits can hold 4..7, which dmlc never writes
            raise DataFormatError(source, f"{where}: invalid continuation flag {cflag}")
        # a record is one part (flag 0) or a first part (1), middle parts (2) and a last part (3)
        if (cflag in (2, 3)) != bool(parts):
            problem = (f"starts with a continuation part (flag {cflag}); the .idx offset points inside a split record"
                       if not parts else f"part {len(parts) + 1} of a split record has flag {cflag}, expected 2 or 3")
            raise DataFormatError(source, f"{where}: {problem}", "rebuild the dataset with `facenas data pack`")
        padded = (length + 3) & ~3
        if limit is not None and pos + 8 + padded > limit:
            raise DataFormatError(source, f"{where}: its length field says {length} bytes, which runs "
                                          f"{pos + 8 + padded - limit} bytes past the next indexed record (offset "
                                          f"{limit})", "the .rec is damaged; rebuild it with `facenas data pack`")
        if 8 + padded <= len(chunk):
            data = chunk[8:8 + length]
            got = padded
        else:
            data = chunk[8:] + read(pos + len(chunk), 8 + padded - len(chunk))
            got = len(data)
            data = data[:length]
        if got < padded:
            raise DataFormatError(source, f"{where}: payload of {length} bytes is cut off after {got} bytes (truncated .rec?)",
                                  "re-copy the file or rebuild it with `facenas data pack`")
        parts.append(data)
        pos += 8 + padded
        if cflag in (0, 3):
            break
    return (_MAGIC_BYTES.join(parts) if len(parts) > 1 else parts[0]), pos


def encoded_length(payload: bytes) -> int:
    """Bytes the record of ``payload`` takes in a ``.rec`` file (headers of every part, padding)."""
    return len(encode_record(payload))


def read_record_at(fh: BinaryIO, offset: int, source: str, key: object = None) -> bytes:
    """Read the (possibly split) record starting at byte ``offset`` of an open ``.rec`` file."""
    def read(pos: int, n: int) -> bytes:
        fh.seek(pos)
        return fh.read(n)

    return read_record_from(read, offset, source, key)


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, record)`` for every record of a ``.rec`` file, in file order."""
    source = os.fspath(path)
    size = os.path.getsize(source)
    with open(source, "rb", buffering=0) as fh:
        def read(pos: int, n: int) -> bytes:
            return os.pread(fh.fileno(), n, pos)

        offset = 0
        while offset < size:
            record, end = _read_record(read, offset, source)
            yield offset, record
            offset = end


class RecordIndex(Mapping[int, int]):
    """An ``.idx`` as two int64 arrays (``keys``, ``offsets``), read-only ``{key: offset}`` mapping.

    A dict of MS1M's 5.3 million keys costs ~0.6 GB and ~6 s to build in Python; two arrays cost
    85 MB, are shared copy-on-write with forked DataLoader workers (a dict's reference counts
    would copy its pages into every worker), and look a key up in O(1) when the keys are
    ``0 .. n-1`` in order (InsightFace's layout), by binary search otherwise. A key listed twice
    maps to its last offset, as a dict built line by line would.
    """

    def __init__(self, keys: np.ndarray, offsets: np.ndarray):
        keys = np.asarray(keys, dtype=np.int64)
        offsets = np.asarray(offsets, dtype=np.int64)
        self._dense = bool(keys.size == 0 or (keys[0] == 0 and keys[-1] == keys.size - 1
                                              and np.all(np.diff(keys) == 1)))
        if not self._dense:
            order = np.argsort(keys, kind="stable")
            keys, offsets = keys[order], offsets[order]
            last = np.ones(keys.size, dtype=bool)
            last[:-1] = keys[1:] != keys[:-1]  # the last of equal keys (stable sort: the last line)
            keys, offsets = keys[last], offsets[last]
        self.keys_array = keys
        self.offsets = offsets

    def _position(self, key: object) -> int:
        if not isinstance(key, numbers.Integral):
            return -1
        key = int(key)
        if self._dense:
            return key if 0 <= key < self.keys_array.size else -1
        i = int(np.searchsorted(self.keys_array, key))
        return i if i < self.keys_array.size and self.keys_array[i] == key else -1

    def __getitem__(self, key: int) -> int:
        i = self._position(key)
        if i < 0:
            raise KeyError(key)
        return int(self.offsets[i])

    def __contains__(self, key: object) -> bool:
        return self._position(key) >= 0

    def __len__(self) -> int:
        return int(self.keys_array.size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys_array.tolist())

    def missing(self, keys: np.ndarray) -> np.ndarray:
        """The entries of ``keys`` (int array) not in the index."""
        keys = np.asarray(keys, dtype=np.int64)
        if self._dense:
            return keys[(keys < 0) | (keys >= self.keys_array.size)]
        i = np.clip(np.searchsorted(self.keys_array, keys), 0, max(0, self.keys_array.size - 1))
        found = self.keys_array[i] == keys if self.keys_array.size else np.zeros(keys.size, bool)
        return keys[~found]


def read_index(path: str | os.PathLike) -> RecordIndex:
    """Parse an ``.idx`` file (``key\\toffset`` lines) into a :class:`RecordIndex` ``{key: offset}``.

    Files in the canonical layout (one ``key<TAB>offset`` per line, as MXNet writes them) are
    parsed by numpy in one pass; anything else (blank lines, spaces, a malformed line) goes
    through the line-by-line reader, which names the first bad line.
    """
    source = os.fspath(path)
    with open(source, "rb") as fh:
        data = fh.read()
    parsed = _parse_index_fast(data)
    if parsed is None:
        return RecordIndex(*_parse_index_lines(data, source))
    return RecordIndex(*parsed)


def _parse_index_fast(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """``(keys, offsets)`` of canonical ``key\\toffset\\n`` lines, or None when the text is not exactly that."""
    if not data:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if data.translate(None, b"0123456789\t\n"):  # signs, spaces, \r, letters: the careful reader decides
        return None
    if data[-1:] != b"\n":
        data += b"\n"
    raw = np.frombuffer(data, dtype=np.uint8)
    where = np.flatnonzero(raw < 48)  # the TABs and NEWLINEs
    kinds = raw[where]
    # TAB, NEWLINE alternate (no blank line, two fields a line) and no field is empty
    if where.size % 2 or where[0] == 0 or not (np.all(kinds[0::2] == 9) and np.all(kinds[1::2] == 10)) \
            or np.any(np.diff(where) == 1):
        return None
    lines = where.size // 2
    del raw, where, kinds
    # C parsing of whitespace-separated integers; the checks above leave only digit fields
    values = np.fromstring(data, dtype=np.int64, sep=" ")
    if values.size != 2 * lines:  # pragma: no cover - guaranteed by the checks above
        return None
    return values[0::2].copy(), values[1::2].copy()


def _parse_index_lines(data: bytes, source: str) -> tuple[list[int], list[int]]:
    """The per-line reader: tolerant of blank lines and surrounding spaces, exact about bad lines."""
    keys: list[int] = []
    offsets: list[int] = []
    for lineno, line in enumerate(data.decode("ascii", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split("\t")
        try:
            key, offset = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise DataFormatError(source, f"line {lineno}: {line[:60]!r} is not 'key<TAB>offset'",
                                  "an .idx file has one 'key\\toffset' line per record") from None
        keys.append(key)
        offsets.append(offset)
    return keys, offsets


class IndexedRecordIO:
    """Read/write an indexed RecordIO pair like ``mxnet.recordio.MXIndexedRecordIO``.

    Args:
        idx_path: the ``.idx`` file.
        rec_path: the ``.rec`` file.
        flag: ``"r"`` to read, ``"w"`` to write (creates/truncates both files).

    The file handle is opened lazily per process, so an instance can be handed to DataLoader
    worker processes: each worker opens its own handle on first use.
    """

    def __init__(self, idx_path: str | os.PathLike, rec_path: str | os.PathLike, flag: str = "r"):
        if flag not in ("r", "w"):
            raise ValueError(f"flag must be 'r' or 'w', got {flag!r}")
        self.idx_path, self.rec_path, self.flag = os.fspath(idx_path), os.fspath(rec_path), flag
        self._fh: BinaryIO | None = None
        self._fidx = None
        self._pid: int | None = None
        if flag == "r":
            for p in (self.idx_path, self.rec_path):
                if not os.path.isfile(p):
                    raise DataFormatError(p, "no such file", "a RecordIO dataset needs both train.rec and train.idx")
            self.idx: Mapping[int, int] = read_index(self.idx_path)
            self.keys = self.idx.keys_array
            self.size = os.path.getsize(self.rec_path)
            offsets = self.idx.offsets
            bad = np.flatnonzero((offsets < 0) | (offsets + 8 > self.size))
            if bad.size:
                k, o = int(self.keys[bad[0]]), int(offsets[bad[0]])
                raise DataFormatError(self.idx_path, f"key {k} has offset {o}, past the end of {self.rec_path} "
                                                     f"({self.size} bytes); {bad.size} such key(s)",
                                      "the .idx does not belong to this .rec, or the .rec is truncated")
            # where each record must end: the next indexed record's start (records never overlap)
            self._starts = np.unique(np.fromiter(self.idx.values(), dtype=np.int64, count=len(self.idx)))
        else:
            Path(self.rec_path).parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.rec_path, "wb")
            self._fidx = open(self.idx_path, "w", encoding="ascii")
            self.idx = {}
            self.keys = []

    # reading
    def _handle(self) -> BinaryIO:
        pid = os.getpid()
        if self._fh is None or self._pid != pid:
            self._fh = open(self.rec_path, "rb", buffering=0)
            self._pid = pid
        return self._fh

    def _pread(self, pos: int, n: int) -> bytes:
        return os.pread(self._handle().fileno(), n, pos)

    def read_idx(self, key: int) -> bytes:
        """The record stored under ``key``."""
        try:
            offset = self.idx[key]
        except KeyError:
            raise DataFormatError(self.idx_path, f"no record with key {key} (the index has {len(self.idx)} keys)",
                                  "the .idx is incomplete; rebuild it with `facenas data pack`") from None
        nxt = int(np.searchsorted(self._starts, offset, side="right"))
        limit = int(self._starts[nxt]) if nxt < self._starts.size else None  # the last: the file's end
        return read_record_from(self._pread, offset, self.rec_path, key, limit)

    # writing
    def write_idx(self, key: int, payload: bytes) -> None:
        """Append ``payload`` as a record and index it under ``key``."""
        if self.flag != "w" or self._fh is None or self._fidx is None:
            raise ValueError("IndexedRecordIO opened for reading")
        pos = self._fh.tell()
        self._fh.write(encode_record(payload))
        self._fidx.write(f"{key}\t{pos}\n")
        self.idx[key] = pos
        self.keys.append(key)

    def close(self) -> None:
        for fh in (self._fh, self._fidx):
            if fh is not None:
                fh.close()
        self._fh = self._fidx = None

    def __enter__(self) -> "IndexedRecordIO":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fh"] = None  # each process opens its own handle
        state["_pid"] = None
        state["_fidx"] = None
        return state


# -- InsightFace's dataset layout -----------------------------------------------------------------
@dataclasses.dataclass
class RecLayout:
    """What an InsightFace RecordIO dataset holds (from its key-0 header record)."""

    image_keys: np.ndarray  # int64 record keys of the images, in key order
    identity_ranges: dict[int, tuple[int, int]]  # identity record key -> [first, end) image keys
    has_header: bool

    def identity_of(self, key: int) -> int | None:
        """The identity (0-based, in identity-record order) whose range holds image ``key``."""
        if not self.identity_ranges:
            return None
        starts = getattr(self, "_starts", None)
        if starts is None:
            starts = np.asarray([a for a, _ in self.identity_ranges.values()], dtype=np.int64)
            self._starts = starts
        return int(np.searchsorted(starts, key, side="right")) - 1


def read_layout(rec: IndexedRecordIO) -> RecLayout:
    """Image keys and identity records of an InsightFace ``.rec`` (key-0 header, flag > 0).

    Without a header record (plain RecordIO image lists), every key is an image key. The header's
    key ranges are checked against the index before anything is allocated from them, and the
    identity records must cover the image keys in order, each with at least one image (the layout
    InsightFace's tools and :func:`write_insightface_rec` write).
    """
    if 0 in rec.idx:
        where = f"{rec.rec_path} record 0 (the header)"
        header, _ = unpack(rec.read_idx(0), where)
        if header.flag > 0:
            label = np.asarray(header.label).ravel()
            if label.size < 2:
                raise DataFormatError(rec.rec_path, f"record 0 has header flag {header.flag} but label {label.tolist()}; "
                                                    "expected [first identity key, end key]")
            first, end = key_span(label, where, "the identity records", 1, 1 << 53)
            # keys 0, 1..first-1 (images), first..end-1 (identities) must all be in the index: find the
            # missing ones from the index's keys, never by walking a range the header claims
            keys = rec.idx.keys_array if isinstance(rec.idx, RecordIndex) else \
                np.fromiter(rec.idx, dtype=np.int64, count=len(rec.idx))
            present = np.unique(keys[(keys >= 0) & (keys < end)])
            if present.size < end:
                if end > 2 * len(rec.idx) + 16:  # far beyond the index: the header, not the index, is wrong
                    raise DataFormatError(where, f"says the dataset has keys 0..{end - 1} (images [1, {first}), "
                                                 f"identity records [{first}, {end})) but the index holds "
                                                 f"{len(rec.idx)} keys",
                                          "the header does not belong to this index, or is damaged; rebuild the "
                                          "dataset with `facenas data pack`")
                missing = np.setdiff1d(np.arange(end, dtype=np.int64), present)[:5].tolist()
                what = f"images are keys 1..{first - 1}" if missing[0] < first else \
                    f"identity records are keys {first}..{end - 1}"
                raise DataFormatError(rec.idx_path, f"header record says {what} but {end - present.size} key(s) are "
                                                    f"missing from the index (first: {missing[:5]})",
                                      "the .idx is incomplete; rebuild it with `facenas data pack`")
            image_keys = np.arange(1, first, dtype=np.int64)
            ranges = {}
            expect = 1  # identity ranges tile the image keys 1..first-1 in order
            for key in range(first, end):
                where = f"{rec.rec_path} record {key} (identity {key - first})"
                h, _ = unpack(rec.read_idx(key), where)
                lab = np.asarray(h.label).ravel()
                if lab.size < 2:
                    raise DataFormatError(where, f"label {lab.tolist()} is not an image-key range [first, end)",
                                          "identity records hold [first image key, end image key)")
                a, b = key_span(lab, where, "the identity's images", 1, first, f" (the image keys, 1..{first - 1})")
                if a != expect or b <= a:
                    raise DataFormatError(where, f"covers image keys [{a}, {b}) but the next identity must start at "
                                                 f"key {expect} and hold at least one image (identity records tile "
                                                 f"keys 1..{first - 1} in order)",
                                          "the identity records are damaged; rebuild the .rec with `facenas data pack`")
                ranges[key] = (a, b)
                expect = b
            if ranges and expect != first:
                raise DataFormatError(rec.rec_path, f"the identity records cover image keys 1..{expect - 1} but the "
                                                    f"images are keys 1..{first - 1}",
                                      "the identity records are damaged; rebuild the .rec with `facenas data pack`")
            return RecLayout(image_keys, ranges, True)
    return RecLayout(np.sort(np.fromiter(rec.idx, dtype=np.int64, count=len(rec.idx))), {}, False)


def read_image_record(rec: IndexedRecordIO, layout: RecLayout, key: int,
                      num_classes: int | None = None) -> tuple[int, bytes]:
    """The checked ``(label, encoded image)`` of image ``key`` of an InsightFace ``.rec``.

    The label must be a finite whole number in ``[0, num_classes)``, equal to the identity whose
    record covers ``key``; a record whose ``id`` field names another key (an ``.idx`` line pointing
    at the wrong record) is refused.
    """
    where = f"{rec.rec_path} record {key}"
    header, payload = unpack(rec.read_idx(key), where)
    label = header.label if np.isscalar(header.label) else np.asarray(header.label).ravel()
    if not np.isscalar(label):
        if label.size == 0:
            raise DataFormatError(where, "has an empty label array", "image records hold a scalar identity label")
        label = label[0]
    if layout.has_header and header.id not in (0, key):
        raise DataFormatError(where, f"the record's id field says it is key {header.id}, but the index points key {key} "
                                     "at it", "the .idx does not belong to this .rec; rebuild it with `facenas data pack`")
    return check_label(label, where, num_classes, layout.identity_of(key)), payload


def write_insightface_rec(out_dir: str | os.PathLike, images: Sequence[bytes], labels: Sequence[int],
                          image_size: tuple[int, int] | None = None, name: str = "train") -> dict:
    """Write encoded images with identity labels as InsightFace's ``train.rec/.idx/property``.

    Images must be grouped by label (identities contiguous), as InsightFace's tools write them.
    Returns ``{"images": n, "identities": k}``.
    """
    out = Path(out_dir)
    labels = [int(l) for l in labels]
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if sorted(set(labels)) != list(range(len(set(labels)))):
        raise ValueError("labels must be the identities 0..K-1 (the readers check each label against its identity "
                         "record)")
    order = np.argsort(np.asarray(labels), kind="stable")
    ids = sorted(set(labels))
    n = len(images)
    first_id_key = n + 1
    with IndexedRecordIO(out / f"{name}.idx", out / f"{name}.rec", "w") as rec:
        rec.write_idx(0, pack(IRHeader(0, [float(first_id_key), float(first_id_key + len(ids))], 0, 1), b""))
        starts: dict[int, list[int]] = {}
        for key, i in enumerate(order, start=1):
            lab = labels[i]
            rec.write_idx(key, pack(IRHeader(0, float(lab), key, 0), images[i]))
            starts.setdefault(lab, [key, key + 1])[1] = key + 1
        for j, lab in enumerate(ids):
            a, b = starts[lab]
            rec.write_idx(first_id_key + j, pack(IRHeader(0, [float(a), float(b)], 0, 0), b""))
    if image_size is not None:
        (out / "property").write_text(f"{len(ids)},{image_size[0]},{image_size[1]}")
    return {"images": n, "identities": len(ids)}
