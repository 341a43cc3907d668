"""Atomic file writes and JSON output.

A checkpoint or result file is written to a temporary file in the same directory and moved into
place with :func:`os.replace`, so a killed process leaves either the old file or the new one,
never a truncated one.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a partial file behind."""
    import torch

    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)


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
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(dumps(obj) + "\n")
        fh.flush()


def emit_json(obj: Any, stream: IO[str] | None = None) -> None:
    """Print ``obj`` as one JSON line: the CLI's machine-readable last line of stdout."""
    stream = stream or sys.stdout
    stream.write(dumps(obj) + "\n")
    stream.flush()
