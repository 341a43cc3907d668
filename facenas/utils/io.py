"""Atomic file writes and JSON output.

A checkpoint or result file is written to a temporary file in the same directory and moved into
place with :func:`os.replace`, so a killed process leaves either the old file or the new one,
never a truncated one.

The file gets the mode an ordinary ``open(path, "w")`` would give it (``0o666`` less the
umask), not :func:`tempfile.mkstemp`'s ``0o600``. A write that fails (a full disk, a read-only
folder) raises ``OSError`` naming ``path``, also when ``torch.save`` hid it behind a RuntimeError.
A killed writer can leave its ``.<name>.<random>.tmp`` sibling behind:
:func:`remove_stale_temp_files` deletes those when the next run takes the folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


#: Names :func:`atomic_write` gives its temporary files: ``.<name>.<mkstemp's 8 characters>.tmp``.
TEMP_FILE_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def current_umask() -> int:
    """The process's umask, read without changing it where ``/proc`` allows (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the portable way and put it back at once
    os.umask(mask)
    return mask


def _with_path(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its filename when the failing call did not say (a write, a flush)."""
    if exc.filename is None and exc.errno is not None:
        return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    return exc


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _with_path(exc, path.parent) from None
    try:
        with contextlib.suppress(OSError):  # mode as open() would give it (mkstemp makes 0o600)
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:  # name the target, not the temporary file
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _with_path(exc, path) from None
        raise


class _WriteRecorder:
    """A file wrapper that keeps the ``OSError`` of a failed write: ``torch.save`` turns it into a
    ``RuntimeError('... unexpected pos ...')`` that no longer says the disk is full."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a partial file behind."""
    import torch

    with atomic_write(path, "wb") as fh:
        recorder = _WriteRecorder(fh)
        try:
            torch.save(obj, recorder)
        except RuntimeError:
            if recorder.error is not None:
                raise recorder.error from None
            raise


def remove_stale_temp_files(folder: str | os.PathLike) -> list[str]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``folder``; return their names.

    Call it only while holding the folder (see :mod:`facenas.utils.lock`): a live writer's temporary
    file looks the same.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if TEMP_FILE_RE.match(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry.name)
    return removed


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any, indent: int | None = None) -> str:
    """JSON text of ``obj`` (numpy scalars and arrays, paths and configs allowed)."""
    return json.dumps(obj, indent=indent, default=_json_default, sort_keys=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line (metrics logs); a crash loses at most the line being written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(dumps(obj) + "\n")
            fh.flush()
    except OSError as exc:
        raise _with_path(exc, Path(path)) from None


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The JSON lines of a log written by :func:`append_jsonl` ([] when there is none); a line a kill cut short
    is skipped."""
    path = Path(path)
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def emit_json(obj: Any, stream: IO[str] | None = None) -> None:
    """Print ``obj`` as one JSON line: the CLI's machine-readable last line of stdout."""
    stream = stream or sys.stdout
    stream.write(dumps(obj) + "\n")
    stream.flush()
