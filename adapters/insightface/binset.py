"""InsightFace ``.bin`` verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

A ``.bin`` is a pickle of ``(bins, issame)``: ``bins`` holds 2N encoded images (pair ``i`` is
``bins[2i]``, ``bins[2i+1]``) and ``issame`` N booleans. Unpickling runs code named inside the
file, so a plain ``pickle.load`` of an untrusted ``.bin`` can execute anything. :func:`load_bin`
uses an unpickler that resolves no global except the few that honest ``.bin`` files need
(``_codecs.encode``, which Python 3 protocol-2 pickles use for bytes, and numpy array
reconstruction for files whose images were stored as uint8 arrays); anything else is refused
before it is called. Py2-era files (``str`` images) load with ``encoding="bytes"``.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facenas.adapters.insightface.checks import check_bin_references
from facenas.errors import DataFormatError
from facenas.utils.io import atomic_write

log = logging.getLogger(__name__)

#: Globals an honest ``.bin`` may reference, and nothing else.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),  # bytes in Python 3 pickles of protocol <= 2
    ("numpy.core.multiarray", "_reconstruct"),  # images stored as numpy uint8 arrays
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


#: fewest pairs a set must hold to be evaluated (10-fold cross-validation needs a pair per fold)
MIN_PAIRS = 10


class UnsafePickleError(DataFormatError):
    """The ``.bin`` references a global that verification sets never need (possible code execution)."""


#: numpy dtypes an image or issame array may have (no object, structured or sub-array dtypes)
_ARRAY_KINDS = "biuf"
#: elements _reconstruct may allocate before the array's state (with its data bytes) is applied;
#: numpy's own pickles pass shape (0,)
_RECONSTRUCT_MAX_BYTES = 1 << 16


class _NdarrayType:
    """Stands in for ``numpy.ndarray`` in a pickle: only ``_reconstruct`` may use it, nothing may call it."""

    def __repr__(self) -> str:
        return "numpy.ndarray (restricted)"


_NDARRAY = _NdarrayType()


def _checked_dtype(dtype: Any, source: str) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None \
            or dtype.subdtype is not None or dtype.hasobject or dtype.itemsize > 16:
        raise UnsafePickleError(source, f"refusing to load: the pickle builds a numpy array of dtype {dtype!r}; "
                                        "a verification set only holds uint8 images and booleans",
                                "rebuild it with `facenas data pairs`")
    return dtype


class _CheckedArray(np.ndarray):
    """The array ``_reconstruct`` makes: its state (shape, dtype, data) is checked before numpy applies it."""

    _source = "<.bin>"

    def __setstate__(self, state: Any) -> None:
        source = self._source
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and isinstance(state[1], tuple)
                and all(isinstance(d, int) and 0 <= d < 2**31 for d in state[1]) and isinstance(state[4], bytes)):
            raise DataFormatError(source, "a numpy array in the pickle has a malformed state",
                                  "rebuild it with `facenas data pairs`")
        dtype = _checked_dtype(state[2], source)
        size = dtype.itemsize * int(np.prod(state[1], dtype=np.int64)) if state[1] else dtype.itemsize
        if size != len(state[4]):
            raise DataFormatError(source, f"a numpy array in the pickle claims shape {state[1]} ({size} bytes) but "
                                          f"holds {len(state[4])} bytes", "rebuild it with `facenas data pairs`")
        super().__setstate__(state)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, source: str):
        super().__init__(fh, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            if module == "_codecs":
                import _codecs

                return _codecs.encode
            if name == "ndarray":
                return _NDARRAY
            real = super().find_class(module, name)
            if name == "dtype":
                return lambda *args: _checked_dtype(real(*args), self.source)
            return self._reconstruct(real)
        raise UnsafePickleError(
            self.source,
            f"refusing to load: the pickle references '{module}.{name}', which a verification set never needs "
            "(loading it with pickle.load could run arbitrary code)",
            "only load .bin files from sources you trust; rebuild it with `facenas data pairs`",
        )

    def _reconstruct(self, real: Any) -> Any:
        source = self.source

        def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
            # numpy pickles call _reconstruct(ndarray, (0,), b'b') and then set the array's state
            if subtype is not _NDARRAY or not isinstance(shape, tuple) or not isinstance(dtype, (bytes, str)):
                raise DataFormatError(source, "a numpy array in the pickle is not built the way numpy pickles arrays",
                                      "rebuild it with `facenas data pairs`")
            if not all(isinstance(d, int) and 0 <= d < 2**31 for d in shape) or \
                    int(np.prod(shape, dtype=np.int64)) * 16 > _RECONSTRUCT_MAX_BYTES:
                raise DataFormatError(source, f"a numpy array in the pickle asks for shape {shape} before its data",
                                      "rebuild it with `facenas data pairs`")
            _checked_dtype(np.dtype(dtype), source)
            arr = real(_CheckedArray, shape, dtype)
            arr._source = source
            return arr

        return reconstruct


@dataclasses.dataclass
class VerificationSet:
    """Decoded pairs of a ``.bin``: ``images`` (2N, H, W, 3) uint8 RGB and ``issame`` (N,) bool."""

    name: str
    path: str
    images: np.ndarray
    issame: np.ndarray

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


def read_bin_raw(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Safely unpickle a ``.bin`` and check its structure; images stay encoded."""
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise DataFormatError(source, "no such file")
    with open(source, "rb") as fh:
        data = fh.read()
    if not data or data[0] != 0x80 and data[:1] not in (b"(", b"]", b"}"):
        raise DataFormatError(source, "not a pickle (an InsightFace .bin is a pickle of (bins, issame))")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataFormatError:  # a refused global or numpy array: the message already says what and why
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a broken file
        raise DataFormatError(source, f"not a readable pickle ({type(exc).__name__}: {exc})",
                              "an InsightFace .bin is a pickle of (bins, issame)") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(source, f"pickle holds a {type(obj).__name__}, expected a 2-tuple (bins, issame)")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)):
        raise DataFormatError(source, f"bins is a {type(bins).__name__}, expected a list of encoded images")
    images: list[bytes] = []
    converted: dict[int, bytes] = {}  # one bytes object per pickled object: memo repeats stay one object
    for i, b in enumerate(bins):
        if isinstance(b, bytes):
            images.append(b)  # the same object where the pickle repeats a reference (counted by load_bin)
        elif isinstance(b, (bytearray, np.ndarray)) and (isinstance(b, bytearray) or b.dtype == np.uint8):
            if id(b) not in converted:
                converted[id(b)] = bytes(b) if isinstance(b, bytearray) else b.tobytes()
            images.append(converted[id(b)])
        else:
            raise DataFormatError(source, f"bins[{i}] (pair {i // 2}) is a {type(b).__name__}, expected encoded image bytes")
    if isinstance(issame, np.ndarray):
        issame = np.asarray(issame).view(np.ndarray)
    elif not isinstance(issame, (list, tuple)) or not all(isinstance(v, (bool, int, np.bool_)) for v in issame):
        raise DataFormatError(source, "issame is not a sequence of booleans")
    try:
        same = np.asarray(issame)
    except Exception:  # noqa: BLE001
        raise DataFormatError(source, "issame is not a sequence of booleans") from None
    if same.ndim != 1 or (same.dtype != np.bool_ and not np.isin(same, (0, 1)).all()):
        raise DataFormatError(source, f"issame has shape {same.shape} and dtype {same.dtype}, expected N booleans")
    if len(images) % 2:
        raise DataFormatError(source, f"{len(images)} images is an odd count; pairs need 2 images each")
    if len(images) != 2 * len(same):
        raise DataFormatError(source, f"{len(images)} images make {len(images) // 2} pairs but issame has {len(same)} entries")
    if not len(same):
        raise DataFormatError(source, "holds no pairs", "a .bin holds (bins, issame) with at least one pair")
    check_bin_references(source, len(images), len({id(b) for b in images}))
    return images, same.astype(bool)


def _decode_all(images: Sequence[bytes], source: str, threads: int) -> np.ndarray:
    from facenas.adapters.insightface.recordio import decode_image

    def one(i: int) -> np.ndarray:
        try:
            return decode_image(images[i], f"{source} image {i} (pair {i // 2})")
        except DataFormatError as exc:
            if exc.problem.startswith(("payload of", "the image payload is empty")):
                raise DataFormatError(source, f"image {i} (pair {i // 2}) is not a decodable image "
                                      f"(expected JPEG or PNG bytes, got {len(images[i])} bytes)") from None
            raise

    if not images:
        return np.zeros((0, 112, 112, 3), np.uint8)
    first = one(0)
    out = np.empty((len(images), *first.shape), dtype=np.uint8)
    out[0] = first

    def fill(i: int) -> None:
        img = one(i)
        if img.shape != first.shape:
            raise DataFormatError(source, f"image {i} (pair {i // 2}) is {img.shape[1]}x{img.shape[0]}, "
                                          f"image 0 is {first.shape[1]}x{first.shape[0]}; all images must share one size")
        out[i] = img

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(fill, range(1, len(images)), chunksize=64))  # OpenCV releases the GIL while decoding
    return out


def load_bin(path: str | os.PathLike, threads: int | None = None) -> VerificationSet:
    """Load and decode a ``.bin`` verification set (safely; see the module docstring).

    Before decoding, image 0's header dimensions (capped at 4096x4096) times the image count is
    checked against the file size (:func:`.checks.check_bin_decoded_size`), so a pickle that
    repeats one image thousands of times through its memo is refused instead of decoded.
    """
    from facenas.adapters.insightface.checks import check_bin_decoded_size, check_image_bytes

    source = os.fspath(path)
    images, same = read_bin_raw(source)
    dims = check_image_bytes(images[0], f"{source} image 0 (pair 0)")
    if dims is None:  # a format whose header is not parsed: decode image 0 (OpenCV's own pixel cap applies)
        from facenas.adapters.insightface.recordio import decode_image

        first = decode_image(images[0], f"{source} image 0 (pair 0)")
        dims = (int(first.shape[1]), int(first.shape[0]))
    check_bin_decoded_size(source, len(images), dims, os.path.getsize(source))
    decoded = _decode_all(images, source, threads or min(4, os.cpu_count() or 1))
    return VerificationSet(Path(source).stem, source, decoded, same)


def write_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write encoded images and pair labels as an InsightFace ``.bin`` (pickle protocol 4)."""
    if len(images) != 2 * len(issame):
        raise ValueError(f"{len(images)} images for {len(issame)} pairs; need 2 per pair")
    with atomic_write(path, "wb") as fh:
        pickle.dump(([bytes(b) for b in images], [bool(s) for s in issame]), fh, protocol=4)


# -- building a .bin from an LFW-style pairs.txt ---------------------------------------------------
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def parse_pairs(pairs_txt: str | os.PathLike) -> list[tuple[str, int, str, int, bool]]:
    """Parse LFW's ``pairs.txt``: ``name n1 n2`` (same) or ``name1 n1 name2 n2`` (different).

    The first line may be a header (``10 300`` or a count); it is skipped when it has 1-2 fields.
    """
    source = os.fspath(pairs_txt)
    pairs = []
    if not os.path.isfile(source):
        raise DataFormatError(source, "no such pairs file", "give LFW's pairs.txt (or a file in its format)")
    try:
        with open(source, encoding="utf-8") as fh:
            lines = [l.split() for l in fh if l.strip()]
    except UnicodeDecodeError as exc:
        raise DataFormatError(source, f"is not a UTF-8 text file ({exc.reason} at byte {exc.start})",
                              "give LFW's pairs.txt (or a file in its format)") from None
    if lines and len(lines[0]) <= 2 and all(x.isdigit() for x in lines[0]):
        lines = lines[1:]
    for lineno, f in enumerate(lines, 2):
        try:
            if len(f) == 3:
                pairs.append((f[0], int(f[1]), f[0], int(f[2]), True))
            elif len(f) == 4:
                pairs.append((f[0], int(f[1]), f[2], int(f[3]), False))
            else:
                raise ValueError
        except ValueError:
            raise DataFormatError(source, f"pair line {lineno - 1}: {' '.join(f)!r} is neither 'name n1 n2' nor "
                                          "'name1 n1 name2 n2'") from None
    if not pairs:
        raise DataFormatError(source, "no pairs found")
    return pairs


def _find_image(root: Path, name: str, number: int) -> Path:
    stem = root / name / f"{name}_{number:04d}"
    for ext in _IMAGE_EXTS:
        if stem.with_suffix(ext).is_file():
            return stem.with_suffix(ext)
    raise DataFormatError(str(stem) + ".jpg", "image of a pair not found",
                          f"expected <image_root>/{name}/{name}_{number:04d}.jpg (or .png/.bmp)")


def build_bin_from_pairs(pairs_txt: str | os.PathLike, image_root: str | os.PathLike, out: str | os.PathLike,
                         image_size: int | None = None) -> dict[str, int]:
    """Write ``out`` (.bin) from LFW-style pairs over an image root of aligned faces.

    Images are stored as their file bytes; with ``image_size`` they are resized to a square of
    that size and re-encoded as JPEG (quality 95). Every image is decoded once as a check.
    """
    import cv2

    from facenas.adapters.insightface.checks import MAX_IMAGE_SIDE
    from facenas.adapters.insightface.recordio import decode_image
    from facenas.errors import ConfigError

    if image_size is not None and not (isinstance(image_size, int) and 8 <= image_size <= MAX_IMAGE_SIDE):
        raise ConfigError(f"image_size (--image-size) is {image_size!r}; it must be 8..{MAX_IMAGE_SIDE} "
                          "(aligned faces are 112)")
    root = Path(image_root)
    if not root.is_dir():
        raise DataFormatError(str(root), "no such image folder", "give the folder holding <name>/<name>_<nnnn>.jpg")
    pairs = parse_pairs(pairs_txt)
    images: list[bytes] = []
    for a_name, a_num, b_name, b_num, _ in pairs:
        for name, num in ((a_name, a_num), (b_name, b_num)):
            path = _find_image(root, name, num)
            data = path.read_bytes()
            img = decode_image(data, str(path), to_rgb=False)
            if image_size and img.shape[:2] != (image_size, image_size):
                img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_AREA)
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
                data = buf.tobytes()
            images.append(data)
    write_bin(out, images, [p[4] for p in pairs])
    same = sum(p[4] for p in pairs)
    return {"pairs": len(pairs), "same": same, "different": len(pairs) - same}
