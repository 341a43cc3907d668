"""Seeded, bounded fuzzing of the data readers: mutated ``.rec`` / ``.idx`` / ``property`` / ``.bin`` files.

Each case copies a small valid dataset (synthetic identities in InsightFace's formats), applies one
mutation and hands the result to a command that reads data -- ``facenas data info`` (decodes every
image), ``facenas eval`` on a ``.bin``, or the training loader (``get_dataloader`` with its default
2 worker processes) -- in its own process, forked from a parent that has imported everything once
(so a case costs tens of milliseconds, not a Python start-up). The child runs under an address-space
limit in its own process group; the parent kills the group after ``--timeout`` seconds and reads
the child's peak RSS from ``wait4``. A case's outcome is one of

- ``refused``: exit code 2 and exactly one line on stderr (``facenas <command>: error: ...``);
- ``identical``: exit code 0 and the data read (every decoded pixel, label, pair flag) equal to the
  valid dataset's -- a benign mutation (an unused ``id2`` field, a duplicated ``.idx`` line, ...);
- ``accepted``: exit code 0 but different data -- a wrong file taken as right;
- ``traceback`` (a traceback or any other exit), ``hang`` (killed at the timeout), ``oom`` (peak RSS
  over max(1 GiB, 20x the dataset's bytes), or a memory error), ``crash`` (killed by a signal),
  ``code_executed`` (a crafted pickle's marker file exists).

``clean`` = ``refused`` + ``identical``. Mutations change structure (framing, headers, labels, index,
property, pickle opcodes) or replace whole payloads (empty, garbage, truncated, decompression
bombs); they never flip bits inside compressed image data, which no reader can tell from a real
image. A fixed list of cases from the issue is always run first (``PINNED``), then seeded random
draws from every family.

Run: ``python -m benchmarks.fuzz_data --cases 300 --seed 0 --save`` (writes
``benchmarks/results/fuzz_data.json``); the fast test runs 40 cases.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pickle
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facenas.adapters.insightface import recordio as rio

#: peak RSS every case may reach whatever its size (the forked child starts at the parent's ~300 MB)
RSS_FLOOR = 1 << 30
#: ... or this many times the bytes of the dataset it reads, whichever is larger
RSS_PER_FILE_BYTE = 20
MARKER = "PWNED"

NAN, INF = float("nan"), float("inf")


# -- the valid dataset ----------------------------------------------------------------------------
@dataclasses.dataclass
class Base:
    """The valid dataset every case starts from, and what is known about it."""

    root: Path
    index: dict[int, int]  # train.idx
    first: int  # first identity-record key
    end: int
    labels: dict[int, int]  # image key -> identity
    jpeg: bytes  # an image payload (for .bin cases)
    bins: list[bytes]
    issame: list[bool]

    @property
    def rec(self) -> Path:
        return self.root / "rec"

    @property
    def image_keys(self) -> list[int]:
        return list(range(1, self.first))


def _make_base_files(root: Path) -> None:
    """Synthetic data (4 identities x 3 images, 32x32; 12 verification pairs) and a tiny model."""
    import torch

    from facenas.adapters.insightface.backbones import get_model
    from facenas.adapters.insightface.backbones.checkpoint import save_backbone
    from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset

    torch.set_num_threads(1)
    write_synthetic_dataset(root / "rec", SyntheticConfig(num_identities=4, images_per_identity=3, val_identities=4,
                                                          val_pairs=12, image_size=32, seed=0))
    shutil.move(str(root / "rec" / "val.bin"), str(root / "val.bin"))
    torch.manual_seed(0)
    save_backbone(get_model("mbf", width_mult=0.25, input_size=32, num_features=16), root / "model.pt")


def make_base(root: Path) -> Base:
    """Write the valid dataset (in a child process: the parent never starts OpenCV / torch threads)."""
    root.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            _make_base_files(root)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"writing the valid fuzz dataset failed (status {status})")
    index = rio.read_index(root / "rec" / "train.idx")
    rec = rio.IndexedRecordIO(root / "rec" / "train.idx", root / "rec" / "train.rec")
    header, _ = rio.unpack(rec.read_idx(0))
    first, end = int(header.label[0]), int(header.label[1])
    labels = {k: int(rio.unpack(rec.read_idx(k))[0].label) for k in range(1, first)}
    _, jpeg = rio.unpack(rec.read_idx(1))
    from facenas.adapters.insightface.binset import read_bin_raw

    bins, issame = read_bin_raw(root / "val.bin")
    return Base(root, index, first, end, labels, jpeg, list(bins), [bool(v) for v in issame])


# -- building blocks of mutations ------------------------------------------------------------------
def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A real, decodable all-black grayscale PNG of ``width`` x ``height`` (20000^2: 389 KB -> 1.2 GB decoded).

    The zlib stream repeats one independently compressed block of rows (full flush), so building
    it takes milliseconds; the Adler-32 of n zero bytes is ``(n % 65521) << 16 | 1``.
    """
    row = b"\0" * (1 + width)  # filter byte + pixels
    rows = 64
    block_co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = block_co.compress(row * rows) + block_co.flush(zlib.Z_FULL_FLUSH)
    n_blocks, rest = divmod(height, rows)
    tail_co = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = tail_co.compress(row * rest) + tail_co.flush(zlib.Z_FINISH)
    raw_len = height * len(row)
    zdata = b"\x78\xda" + block * n_blocks + tail + struct.pack(">I", ((raw_len % 65521) << 16) | 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zdata) + chunk(b"IEND", b"")


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its SOF marker patched to claim ``width`` x ``height``."""
    data = bytearray(jpeg)
    pos = 2
    while pos + 4 <= len(data):
        marker, length = data[pos + 1], struct.unpack_from(">H", data, pos + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, pos + 5, height, width)
            return bytes(data)
        pos += 2 + length
    raise ValueError("no SOF marker")


def _records(rec_dir: Path) -> dict[int, bytes]:
    rec = rio.IndexedRecordIO(rec_dir / "train.idx", rec_dir / "train.rec")
    return {k: rec.read_idx(k) for k in sorted(rec.idx)}


def _rewrite(rec_dir: Path, records: dict[int, bytes]) -> None:
    with rio.IndexedRecordIO(rec_dir / "train.idx", rec_dir / "train.rec", "w") as w:
        for key in sorted(records):
            w.write_idx(key, records[key])


def _patch(rec_dir: Path, key: int, offset: int, fmt: str, *values: Any) -> None:
    """Overwrite bytes of record ``key``'s payload (``offset`` past its 8-byte framing) in place."""
    raw = bytearray((rec_dir / "train.rec").read_bytes())
    struct.pack_into(fmt, raw, rio.read_index(rec_dir / "train.idx")[key] + 8 + offset, *values)
    (rec_dir / "train.rec").write_bytes(bytes(raw))


def _replace_payload(rec_dir: Path, key: int, payload: bytes) -> None:
    records = _records(rec_dir)
    header, _ = rio.unpack(records[key])
    records[key] = rio.pack(header, payload)
    _rewrite(rec_dir, records)


def _idx_lines(rec_dir: Path) -> list[str]:
    return (rec_dir / "train.idx").read_text().splitlines()


def _write_idx(rec_dir: Path, lines: list[str], newline: str = "\n") -> None:
    (rec_dir / "train.idx").write_bytes((newline.join(lines) + newline).encode())


def _write_bin(path: Path, obj: Any, protocol: int = 4) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


class _Reduce:
    """Pickles as ``callable(*args)`` (optionally with a state): how crafted pickles are written."""

    def __init__(self, fn: Any, args: tuple, state: Any = None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


# -- mutations -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Mutation:
    """One case: ``apply(case_dir)`` mutates the copy of the valid data and returns the path to read."""

    name: str
    family: str
    target: str  # "info" | "eval" | "loader"
    apply: Callable[[Path], Path]


def _rec_case(name: str, family: str, fn: Callable[[Path], None], target: str = "info") -> Mutation:
    def apply(case: Path) -> Path:
        fn(case / "rec")
        return case / "rec"

    return Mutation(name, family, target, apply)


def _bin_case(name: str, family: str, fn: Callable[[Path], None], target: str = "info") -> Mutation:
    def apply(case: Path) -> Path:
        fn(case / "val.bin")
        return case / "val.bin"

    return Mutation(name, family, target, apply)


def _fmt(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def header_label(base: Base, first: float, end: float, target: str = "info") -> Mutation:
    return _rec_case(f"rec.header/label=({_fmt(first)},{_fmt(end)})", "rec.header",
                     lambda d: _patch(d, 0, 24, "<ff", first, end), target)


def header_flag(base: Base, flag: int) -> Mutation:
    return _rec_case(f"rec.header/flag={flag}", "rec.header", lambda d: _patch(d, 0, 0, "<I", flag))


def identity_range(base: Base, j: int, a: float, b: float) -> Mutation:
    return _rec_case(f"rec.identity/{j}=({_fmt(a)},{_fmt(b)})", "rec.identity",
                     lambda d: _patch(d, base.first + j, 24, "<ff", a, b))


def image_label(base: Base, key: int, label: float, target: str = "info") -> Mutation:
    return _rec_case(f"rec.label/key{key}={_fmt(label)}", "rec.label", lambda d: _patch(d, key, 4, "<f", label), target)


def image_id(base: Base, key: int, value: int) -> Mutation:
    return _rec_case(f"rec.id/key{key}={value}", "rec.id", lambda d: _patch(d, key, 8, "<Q", value))


def image_id2(base: Base, key: int, value: int) -> Mutation:
    return _rec_case(f"rec.id2/key{key}={value}", "rec.id", lambda d: _patch(d, key, 16, "<Q", value))


def image_flag(base: Base, key: int, flag: int) -> Mutation:
    return _rec_case(f"rec.flag/key{key}={flag}", "rec.label", lambda d: _patch(d, key, 0, "<I", flag))


def framing(base: Base, key: int, what: str, value: int) -> Mutation:
    def fn(d: Path) -> None:
        raw = bytearray((d / "train.rec").read_bytes())
        off = rio.read_index(d / "train.idx")[key]
        magic, lrec = struct.unpack_from("<II", raw, off)
        if what == "magic":
            struct.pack_into("<I", raw, off, magic ^ value)
        elif what == "length":
            struct.pack_into("<I", raw, off + 4, (lrec & ~((1 << 29) - 1)) | max(0, min((1 << 29) - 1, value)))
        else:  # continuation flag
            struct.pack_into("<I", raw, off + 4, (value << 29) | (lrec & ((1 << 29) - 1)))
        (d / "train.rec").write_bytes(bytes(raw))

    return _rec_case(f"rec.framing/key{key}/{what}={value}", "rec.framing", fn)


def payload(base: Base, key: int, what: str, data: Callable[[], bytes], target: str = "info") -> Mutation:
    return _rec_case(f"rec.payload/key{key}={what}", "rec.payload", lambda d: _replace_payload(d, key, data()), target)


def idx_mutation(base: Base, what: str, fn: Callable[[Path], None], target: str = "info") -> Mutation:
    return _rec_case(f"idx/{what}", "idx", fn, target)


def property_text(base: Base, text: str | None, target: str = "info") -> Mutation:
    def fn(d: Path) -> None:
        if text is None:
            (d / "property").unlink()
        else:
            (d / "property").write_text(text)

    return _rec_case(f"property/{text!r}", "property", fn, target)


def truncate_rec(base: Base, size: int) -> Mutation:
    def fn(d: Path) -> None:
        raw = (d / "train.rec").read_bytes()
        (d / "train.rec").write_bytes(raw[:size])

    return _rec_case(f"rec.truncate/{size}", "rec.framing", fn)


def rec_flip(base: Base, key: int, offset: int, xor: int) -> Mutation:
    """XOR one byte of a record's framing, image-record header or label floats (never image data)."""
    def fn(d: Path) -> None:
        raw = bytearray((d / "train.rec").read_bytes())
        raw[rio.read_index(d / "train.idx")[key] + offset] ^= xor
        (d / "train.rec").write_bytes(bytes(raw))

    return _rec_case(f"rec.flip/key{key}+{offset}^{xor:#x}", "rec.flip", fn)


def bin_obj(base: Base, name: str, obj: Callable[[], Any], family: str = "bin.structure", protocol: int = 4,
            target: str = "info") -> Mutation:
    return _bin_case(f"bin/{name}", family, lambda p: _write_bin(p, obj(), protocol), target)


def bin_bytes(base: Base, name: str, fn: Callable[[bytes], bytes], family: str = "bin.structure",
              target: str = "info") -> Mutation:
    return _bin_case(f"bin/{name}", family, lambda p: p.write_bytes(fn(p.read_bytes())), target)


def _with_image(base: Base, i: int, data: bytes) -> tuple[list[bytes], list[bool]]:
    bins = list(base.bins)
    bins[i] = data
    return bins, list(base.issame)


def _structural_positions(data: bytes, images: list[bytes]) -> list[int]:
    """Byte positions of a pickle that are not inside an image's bytes."""
    inside = np.zeros(len(data), bool)
    pos = 0
    for img in images:
        at = data.find(img, pos)
        if at >= 0:
            inside[at:at + len(img)] = True
            pos = at + len(img)
    return [int(p) for p in np.flatnonzero(~inside)]


def _flip(data: bytes, pos: int, xor: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= xor
    return bytes(out)


def code_pickles() -> dict[str, bytes]:
    """Pickles that run a command (creating the marker file) when loaded with ``pickle.load``."""
    import subprocess

    return {
        "posix.system": b"\x80\x02cposix\nsystem\nX\x0b\x00\x00\x00touch " + MARKER.encode() + b"\x85R.",
        "builtins.exec": b"\x80\x02cbuiltins\nexec\n(Vopen('" + MARKER.encode() + b"2','w').close()\ntR.",
        "INST os.system": b"(S'touch " + MARKER.encode() + b"3'\nios\nsystem\n.",
        "subprocess.Popen": pickle.dumps(([_Reduce(subprocess.Popen, (["touch", MARKER + "4"],))], [True]), protocol=4),
        "builtins.eval in issame": pickle.dumps(([b"x", b"y"], _Reduce(eval, (f"open('{MARKER}5','w')",))), protocol=2),
        "getattr(__import__('os'), 'system')": (b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(X\x02\x00\x00\x00os"
                                                b"tRX\x06\x00\x00\x00systemtR(X\x0c\x00\x00\x00touch " + MARKER.encode()
                                                + b"6tR."),
    }


def numpy_pickles(base: Base) -> dict[str, Callable[[], Any]]:
    """Pickles that abuse the numpy globals an honest ``.bin`` may name."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

    return {
        "ndarray((100000,100000)) called": lambda: ([_Reduce(np.ndarray, ((100000, 100000),))] * 2, [True]),
        "_reconstruct huge shape": lambda: ([_Reduce(_reconstruct, (np.ndarray, (100000, 100000), b"b"))] * 2, [True]),
        "object-dtype state": lambda: ([_Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
                                                (1, (10**9,), np.dtype("O"), False, [1, 2]))] * 2, [True]),
        "state larger than data": lambda: ([_Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
                                                    (1, (10**9,), np.dtype("u1"), False, b"abc"))] * 2, [True]),
    }


def pinned(base: Base) -> list[Mutation]:
    """The cases of the issue, always run (the large run adds random draws)."""
    f, e, k = base.first, base.end, len(set(base.labels.values()))
    key = base.image_keys[len(base.image_keys) // 2]
    big = png_bomb()
    cases = [
        header_label(base, f, 3e38), header_label(base, f, 1e9), header_label(base, 1e8, 1e8 + 1),
        header_label(base, NAN, e), header_label(base, f, INF, "loader"),
        image_label(base, key, NAN), image_label(base, key, INF, "loader"), image_label(base, key, -1),
        image_label(base, key, k), image_label(base, key, 1e6), image_label(base, key, base.labels[key] + 0.5),
        payload(base, key, "empty", lambda: b""), payload(base, key, "empty", lambda: b"", "loader"),
        payload(base, key, "png-20000x20000", lambda: big), payload(base, key, "garbage", lambda: b"\x00junk" * 50,
                                                                      "loader"),
        property_text(base, f"{k + 1},32,32"), property_text(base, "abc"), property_text(base, f"{k},33,32"),
        property_text(base, None),
        idx_mutation(base, "swap-two-images", lambda d: _swap_idx(d, 1, 2)),
        bin_obj(base, "memo: one jpeg x60000", lambda: ([base.jpeg] * 60000, [True] * 30000)),
        bin_obj(base, "png-20000x20000", lambda: _with_image(base, 3, big)),
        bin_obj(base, "empty", lambda: ([], [])), bin_obj(base, "9 pairs", lambda: (base.bins[:18], base.issame[:9]),
                                                          target="eval"),
        bin_obj(base, "numpy-array images (protocol 2)",
                lambda: ([np.frombuffer(b, np.uint8) for b in base.bins], base.issame), protocol=2),
    ]
    cases += [bin_bytes(base, f"code: {n}", (lambda d, p=p: p), "bin.code") for n, p in code_pickles().items()]
    cases += [bin_obj(base, f"numpy: {n}", fn, "bin.code") for n, fn in numpy_pickles(base).items()]
    return cases


def _swap_idx(d: Path, a: int, b: int) -> None:
    idx = dict(rio.read_index(d / "train.idx"))
    idx[a], idx[b] = idx[b], idx[a]
    _write_idx(d, [f"{k}\t{o}" for k, o in idx.items()])


def random_mutation(base: Base, rng: random.Random) -> Mutation:
    """One seeded random draw from every mutation family."""
    f, e = base.first, base.end
    keys = base.image_keys
    k = len(set(base.labels.values()))
    key = rng.choice(keys)
    pool_key = [NAN, INF, -INF, -1, 0, 1, f - 1, f, f + 1, e - 1, e, e + 1, 1e8, 1e9, 3e38, 2**31, f + 0.5, 2**24 + 1]
    family = rng.choice(["header", "identity", "label", "id", "flag", "framing", "payload", "idx", "property",
                         "truncate", "flip", "flip", "bin.structure", "bin.flip", "bin.image", "bin.issame"])
    target = rng.choice(["info", "info", "loader"]) if family not in ("bin.structure", "bin.flip", "bin.image",
                                                                     "bin.issame") else rng.choice(["info", "eval"])
    if family == "header":
        a, b = (rng.choice(pool_key + [f]), rng.choice(pool_key + [e]))
        return header_label(base, a, b, target) if rng.random() < 0.8 else header_flag(base, rng.choice([0, 1, 3, 255, 2**32 - 1]))
    if family == "identity":
        j = rng.randrange(e - f)
        a0, b0 = _identity_span(base, j)
        a = rng.choice([a0, a0, a0 - 1, a0 + 1, NAN, INF, -1, 0, f, 1e9, a0 + 0.5])
        b = rng.choice([b0, b0, b0 - 1, b0 + 1, NAN, -INF, f, f + 1, 1e9, b0 - 0.5])
        return identity_range(base, j, a, b)
    if family == "label":
        lab = base.labels[key]
        value = rng.choice([NAN, INF, -INF, -1, k, k + 1, 1e6, lab + 0.5, lab, (lab + 1) % k, 2**31, -0.0])
        return image_label(base, key, value, target) if rng.random() < 0.85 else image_flag(base, key, rng.choice([1, 2, 2**31]))
    if family == "id":
        if rng.random() < 0.5:
            return image_id(base, key, rng.choice([0, key, key + 1, rng.choice(keys), f, 2**63]))
        return image_id2(base, key, rng.choice([1, 2**40, 2**64 - 1]))
    if family == "framing":
        any_key = rng.choice(sorted(base.index))
        what = rng.choice(["magic", "length", "cflag"])
        record_len = _record_len(base, any_key)
        value = {"magic": rng.choice([1, 0xFF, 0xFFFFFFFF]),
                 "length": rng.choice([0, 1, record_len - 1, record_len + 1, record_len - 4, record_len + 4,
                                       record_len * 100, (1 << 29) - 1]),
                 "cflag": rng.choice([1, 2, 3, 4, 7])}[what]
        return framing(base, any_key, what, value)
    if family == "payload":
        what = rng.choice(["empty", "garbage", "half", "sof-65535x65535", "sof-0x0", "png-20000x20000", "one-byte"])
        if what == "png-20000x20000":
            return payload(base, key, what, png_bomb, target)
        data = {"empty": b"", "garbage": bytes(rng.randrange(256) for _ in range(300)),
                "half": base.jpeg[:len(base.jpeg) // 2], "sof-65535x65535": jpeg_claiming(base.jpeg, 65535, 65535),
                "sof-0x0": jpeg_claiming(base.jpeg, 0, 0), "one-byte": b"\xff"}[what]
        return payload(base, key, what, lambda: data, target)
    if family == "idx":
        return _random_idx(base, rng, target)
    if family == "property":
        text = rng.choice([None, "", "abc", f"{k},32,32\n", f" {k} , 32 , 32 ", f"{k},32", f"{k},32,32,1", f"-1,32,32",
                           f"0,32,32", f"{k},0,0", f"{k + 1},32,32", f"{k - 1},32,32", f"{k},32,33", "1e9,32,32",
                           f"{k},99999,99999", f"{k}.5,32,32", "9" * 5000])
        return property_text(base, text, target)
    if family == "truncate":
        size = (base.root / "rec" / "train.rec").stat().st_size
        return truncate_rec(base, rng.choice([0, 4, 8, rng.randrange(size), size - 1, size - 4]))
    if family == "flip":
        any_key = rng.choice(sorted(base.index))
        limit = 8 + 24 + (8 if any_key == 0 or any_key >= f else 0)  # framing + IR header (+ label floats)
        return rec_flip(base, any_key, rng.randrange(limit), 1 << rng.randrange(8))
    data = pickle.dumps((base.bins, base.issame), protocol=4)
    if family == "bin.flip":
        pos = rng.choice(_structural_positions(data, base.bins))
        xor = 1 << rng.randrange(8)
        return bin_bytes(base, f"flip+{pos}^{xor:#x}", lambda d: _flip(d, pos, xor), "bin.flip", target)
    if family == "bin.structure":
        what = rng.choice(["truncate", "dict", "odd", "3-tuple", "bins-int", "nested", "protocol-2", "protocol-5",
                           "issame-np"])
        if what == "truncate":
            cut = rng.randrange(len(data))
            return bin_bytes(base, f"truncate-{cut}", lambda d: d[:cut], target=target)
        obj = {"dict": lambda: {"bins": base.bins, "issame": base.issame},
               "odd": lambda: (base.bins[:-1], base.issame),
               "3-tuple": lambda: (base.bins, base.issame, None),
               "bins-int": lambda: (list(range(len(base.bins))), base.issame),
               "nested": lambda: ([base.bins], base.issame),
               "protocol-2": lambda: (base.bins, base.issame),
               "protocol-5": lambda: (base.bins, base.issame),
               "issame-np": lambda: (base.bins, np.asarray(base.issame))}[what]
        protocol = 2 if what == "protocol-2" else 5 if what == "protocol-5" else 4
        return bin_obj(base, what, obj, protocol=protocol, target=target)
    if family == "bin.issame":
        what = rng.choice(["short", "long", "two", "none", "strings", "floats", "nan"])
        n = len(base.issame)
        issame = {"short": base.issame[:-1], "long": base.issame + [True], "two": [2] + base.issame[1:],
                  "none": None, "strings": ["yes"] * n, "floats": [0.5] * n, "nan": [NAN] * n}[what]
        return bin_obj(base, f"issame-{what}", lambda: (base.bins, issame), target=target)
    i = rng.randrange(len(base.bins))  # bin.image
    what = rng.choice(["empty", "garbage", "half", "sof-65535x65535", "png-20000x20000", "str"])
    if what == "png-20000x20000":
        return bin_obj(base, f"image{i}-{what}", lambda: _with_image(base, i, png_bomb()), "bin.image", target=target)
    img = {"empty": b"", "garbage": bytes(rng.randrange(256) for _ in range(200)), "half": base.bins[i][:len(base.bins[i]) // 2],
           "sof-65535x65535": jpeg_claiming(base.bins[i], 65535, 65535), "str": "not bytes"}[what]
    return bin_obj(base, f"image{i}-{what}", lambda: _with_image(base, i, img), "bin.image", target=target)


def _identity_span(base: Base, j: int) -> tuple[int, int]:
    keys = [k for k, lab in base.labels.items() if lab == j]
    return min(keys), max(keys) + 1


def _record_len(base: Base, key: int) -> int:
    raw = (base.root / "rec" / "train.rec").read_bytes()
    return struct.unpack_from("<I", raw, base.index[key] + 4)[0] & ((1 << 29) - 1)


def _random_idx(base: Base, rng: random.Random, target: str) -> Mutation:
    size = (base.root / "rec" / "train.rec").stat().st_size
    keys = sorted(base.index)
    what = rng.choice(["delete", "duplicate", "swap", "offset+1", "offset-4", "offset+8", "past-end", "negative",
                       "text", "huge-key", "extra-key", "empty", "crlf", "spaces", "swap-identities", "blank-lines"])
    a, b = rng.sample(keys, 2)

    def fn(d: Path) -> None:
        lines = _idx_lines(d)
        pos = {int(l.split("\t")[0]): i for i, l in enumerate(lines)}
        if what == "delete":
            del lines[pos[a]]
        elif what == "duplicate":
            lines.insert(pos[a] + 1, lines[pos[a]])
        elif what == "swap":
            _swap_idx(d, a, b)
            return
        elif what == "swap-identities":
            _swap_idx(d, base.first, base.end - 1)
            return
        elif what.startswith("offset"):
            delta = int(what[6:])
            lines[pos[a]] = f"{a}\t{base.index[a] + delta}"
        elif what == "past-end":
            lines[pos[a]] = f"{a}\t{size + 100}"
        elif what == "negative":
            lines[pos[a]] = f"{a}\t-8"
        elif what == "text":
            lines[pos[a]] = f"{a}\tzero"
        elif what == "huge-key":
            lines.append(f"{10**30}\t0")
        elif what == "extra-key":
            lines.append(f"{base.end + 5}\t{base.index[1]}")
        elif what == "empty":
            lines = []
        elif what == "crlf":
            _write_idx(d, lines, "\r\n")
            return
        elif what == "spaces":
            lines = [l.replace("\t", " ") for l in lines]
        elif what == "blank-lines":
            lines = [x for l in lines for x in (l, "")]
        _write_idx(d, lines)

    return idx_mutation(base, f"{what}({a},{b})" if what in ("swap", "delete", "duplicate") else what, fn, target)


def build_cases(base: Base, count: int, seed: int) -> list[Mutation]:
    """The pinned cases, then seeded random draws, ``count`` in all (at least the pinned ones)."""
    cases = pinned(base)
    rng = random.Random(seed)
    while len(cases) < count:
        cases.append(random_mutation(base, rng))
    return cases


# -- running a case in a child process -------------------------------------------------------------
def _digest_rec(path: Path) -> str:
    from facenas.adapters.insightface.dataset import build_dataset

    ds = build_dataset(path, flip=False)
    h = hashlib.sha256(f"{len(ds)} {ds.num_classes}".encode())
    for i in range(len(ds)):
        img, label = ds.read(i)
        h.update(struct.pack("<q", label) + img.tobytes())
    return h.hexdigest()


def _digest_bin(path: Path) -> str:
    from facenas.adapters.insightface.binset import load_bin

    vs = load_bin(path, threads=1)
    return hashlib.sha256(vs.images.tobytes() + vs.issame.tobytes()).hexdigest()


def _loader_target(path: Path) -> int:
    """The training loader as ``facenas train`` builds it (2 workers), every batch; one line on a data error."""
    from facenas.adapters.insightface.dataset import get_dataloader
    from facenas.errors import FacenasError

    try:
        loader = get_dataloader(path, 0, batch_size=4, num_workers=2, seed=0, drop_last=False)
        for _ in loader:
            pass
    except FacenasError as exc:  # what facenas.cli.main does with it
        print(f"facenas train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _child(case: Path, target: str, path: Path, model: Path, mem_limit: int) -> None:  # pragma: no cover - child
    os.setpgrp()  # the parent kills the whole group (DataLoader workers too) on a timeout
    resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    os.chdir(case)  # a crafted pickle's relative marker file lands here
    out = os.open(case / "stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(case / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    code = 1
    try:
        import torch

        torch.set_num_threads(1)
        from facenas.cli import main

        if target == "info":
            code = main(["data", "info", str(path), "--json"])
        elif target == "eval":
            code = main(["eval", "--model", str(model), "--bin", str(path), "--json", "--threads", "1"])
        else:
            code = _loader_target(path)
        if code == 0:
            digest = _digest_bin(path) if path.suffix == ".bin" else _digest_rec(path)
            (case / "digest.txt").write_text(digest)
    except BaseException:  # noqa: BLE001 - what an uncaught exception would print
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def run_case(base: Base, mutation: Mutation, work: Path, reference: dict[str, str] | None, timeout: float,
             mem_limit: int) -> dict[str, Any]:
    """Apply ``mutation`` to a fresh copy of the valid data and run its target in a child process."""
    case = work / "case"
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    shutil.copytree(base.rec, case / "rec")
    shutil.copy(base.root / "val.bin", case / "val.bin")
    path = mutation.apply(case)
    size = _dir_bytes(path)
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        _child(case, mutation.target, path, base.root / "model.pt", mem_limit)
    hang = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - t0 > timeout:
            hang = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.005)
    seconds = time.perf_counter() - t0
    try:  # DataLoader workers left behind by a killed child
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    stderr = (case / "stderr.txt").read_text(errors="replace") if (case / "stderr.txt").exists() else ""
    lines = [l for l in stderr.splitlines() if l.strip() and " INFO " not in l and " WARNING " not in l]
    digest = (case / "digest.txt").read_text() if (case / "digest.txt").exists() else None
    peak = usage.ru_maxrss * 1024
    bound = max(RSS_FLOOR, RSS_PER_FILE_BYTE * size)
    code = os.waitstatus_to_exitcode(status)
    if any(p.name.startswith(MARKER) for p in case.rglob("*")):
        outcome = "code_executed"
    elif hang:
        outcome = "hang"
    elif code < 0:
        outcome = "crash"
    elif peak > bound or "MemoryError" in stderr or "Insufficient memory" in stderr:
        outcome = "oom"
    elif "Traceback" in stderr or code not in (0, 2):
        outcome = "traceback"
    elif code == 2:
        outcome = "refused" if len(lines) == 1 and lines[0].startswith("facenas ") else "unclear"
    elif reference is None or digest == reference.get(f"{'bin' if path.suffix == '.bin' else 'rec'}"):
        outcome = "identical"
    else:
        outcome = "accepted"
    return {"name": mutation.name, "family": mutation.family, "target": mutation.target, "outcome": outcome,
            "exit_code": code, "seconds": round(seconds, 3), "peak_rss_mb": round(peak / 2**20, 1),
            "rss_bound_mb": round(bound / 2**20, 1), "input_bytes": size,
            "message": (lines[-1] if lines else "")[:400], "stderr_tail": stderr[-1500:] if outcome not in (
                "refused", "identical") else ""}


def _address_limit() -> int:
    """The child's RLIMIT_AS: what the parent maps now plus 3 GiB (a 4.9 GB allocation fails, not the machine)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        vm = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))
    return vm + (3 << 30)


def run_fuzz(count: int, seed: int, timeout: float = 30.0, work: Path | None = None) -> dict[str, Any]:
    """Run ``count`` cases (pinned + seeded random) and count the outcomes."""
    import cv2  # noqa: F401 - imported once here, so each forked case does not pay for it
    import torch  # noqa: F401

    import facenas.cli
    from facenas.adapters.insightface import binset, dataset, evaluate  # noqa: F401
    from facenas.adapters.insightface.backbones import checkpoint  # noqa: F401

    facenas.cli.build_parser()  # imports every command module

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="facenas_fuzz_")) if own else work
    try:
        base = make_base(work / "base")
        mem_limit = _address_limit()
        reference: dict[str, str] = {}
        valid = [Mutation("valid/rec", "valid", "info", lambda c: c / "rec"),
                 Mutation("valid/rec-loader", "valid", "loader", lambda c: c / "rec"),
                 Mutation("valid/bin", "valid", "info", lambda c: c / "val.bin"),
                 Mutation("valid/bin-eval", "valid", "eval", lambda c: c / "val.bin")]
        for m in valid:
            r = run_case(base, m, work, None, timeout, mem_limit)
            digest_file = work / "case" / "digest.txt"
            if r["outcome"] != "identical" or not digest_file.exists():
                raise RuntimeError(f"the valid dataset is not read cleanly by {m.name}: {r}")
            reference.setdefault("bin" if m.name.startswith("valid/bin") else "rec", digest_file.read_text())
        cases = build_cases(base, count, seed)
        results = []
        t0 = time.perf_counter()
        for m in cases:
            results.append(run_case(base, m, work, reference, timeout, mem_limit))
        counts: dict[str, int] = {}
        for r in results:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        clean = counts.get("refused", 0) + counts.get("identical", 0)
        return {
            "seed": seed, "tried": len(results), "pinned": len(pinned(base)), "timeout_s": timeout,
            "rss_bound": f"max({RSS_FLOOR >> 20} MiB, {RSS_PER_FILE_BYTE} x input bytes)",
            "clean": clean, "refused": counts.get("refused", 0), "identical": counts.get("identical", 0),
            "traceback": counts.get("traceback", 0) + counts.get("unclear", 0), "hang": counts.get("hang", 0),
            "oom": counts.get("oom", 0), "accepted": counts.get("accepted", 0), "crash": counts.get("crash", 0),
            "code_executed": counts.get("code_executed", 0),
            "max_peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "max_seconds": max(r["seconds"] for r in results),
            "total_seconds": round(time.perf_counter() - t0, 1),
            "families": sorted({r["family"] for r in results}),
            "cases": results,
        }
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    p.add_argument("--json-out", default=None, help="write the full result (every case) to this file")
    p.add_argument("--save", action="store_true", help="save benchmarks/results/fuzz_data.json")
    args = p.parse_args(argv)
    result = run_fuzz(args.cases, args.seed, args.timeout)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    summary = {k: v for k, v in result.items() if k != "cases"}
    bad = [c for c in result["cases"] if c["outcome"] not in ("refused", "identical")]
    if args.save:
        from benchmarks._common import save_result

        sys.argv = ["-m", "benchmarks.fuzz_data", *(sys.argv[1:] if argv is None else argv)]  # no local paths
        save_result("fuzz_data", {**summary, "not_clean": bad,
                                  "outcomes_by_family": _by_family(result["cases"])})
    else:
        print(json.dumps(summary, indent=1))
    for c in bad:
        print(f"NOT CLEAN: {c['outcome']}: {c['name']} ({c['target']}): {c['message'] or c['stderr_tail'][-300:]}",
              file=sys.stderr)
    return 0 if not bad else 1


def _by_family(cases: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in cases:
        fam = out.setdefault(c["family"], {})
        fam[c["outcome"]] = fam.get(c["outcome"], 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main())
