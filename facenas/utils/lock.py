"""One writer per output folder: a lock file holding the holder's pid and host.

Every command that writes a run into a folder (``facenas train``, a stage of a search, the
ENAS / TNAS / OFA writers) takes :func:`output_lock` first. A second run into the same folder
fails with one line naming the holder (pid, host, command, start time) instead of interleaving
its checkpoints and metrics with the first one's. A lock whose process is gone (same host, the
pid no longer runs, or runs a process that started later: the pid was reused) is stale: it is
taken over with a warning, so ``kill -9`` never leaves a folder locked. A lock from another host
cannot be checked and is refused with the command that clears it.

The lock is re-entrant within one process (a stage that trains into its own folder), and taking
it also deletes the ``.tmp`` files a killed atomic writer left behind (:mod:`facenas.utils.io`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from facenas.errors import OutputFolderError
from facenas.utils.io import remove_stale_temp_files

log = logging.getLogger(__name__)

#: The lock file's name inside the output folder.
LOCK_NAME = ".facenas.lock"
#: A lock file still empty after this many seconds was left by a writer killed while creating it.
EMPTY_LOCK_GRACE_S = 10.0

# folder -> how many times this process holds it (re-entrant)
_HELD: dict[str, int] = {}


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def holder_record() -> dict[str, Any]:
    """What this process writes into a lock: pid, host, its start tick, the command, the time."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _process_start(os.getpid()),
            "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def describe_holder(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} "
            f"({holder.get('command') or 'command not recorded'})")


def is_stale(holder: dict[str, Any] | None, age_s: float) -> bool:
    """True when the lock's process is known to be gone."""
    if holder is None:  # empty or unreadable: a writer killed between creating and filling it
        return age_s > EMPTY_LOCK_GRACE_S
    if holder.get("host") != socket.gethostname():
        return False  # cannot check another machine's processes
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if not _pid_alive(pid):
        return True
    recorded, now = holder.get("start_ticks"), _process_start(pid)
    return recorded is not None and now is not None and recorded != now  # the pid was reused


def read_holder(lock: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prepare_output_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and parents); a path that exists as a file is a one-line user error."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"output '{folder}' is a file, not a folder; give a folder path (--output DIR)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputFolderError(f"output '{folder}': a part of the path is a file, not a folder; "
                                "give a folder path (--output DIR)") from None
    return folder


def acquire(folder: str | os.PathLike, purpose: str = "a run") -> Path:
    """Take ``folder``'s lock (creating the folder) or raise :class:`OutputFolderError` naming the holder."""
    folder = prepare_output_folder(folder)
    key = str(folder.resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        return folder / LOCK_NAME
    lock = folder / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = read_holder(lock)
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                log.warning("taking over %s, left by this process", lock)
            elif not is_stale(holder, age):
                who = describe_holder(holder) if holder else "a process that is still creating it"
                raise OutputFolderError(
                    f"output folder {folder} is in use by another run: {who}; wait for it to end, stop it, or use "
                    f"another output folder (if that run is gone, delete {lock})") from None
            else:
                log.warning("removing the stale lock of %s in %s (that process is gone)",
                            describe_holder(holder) if holder else "an unfinished writer", folder)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({**holder_record(), "purpose": purpose}, fh)
            fh.write("\n")
        _HELD[key] = 1
        removed = remove_stale_temp_files(folder)
        if removed:
            log.warning("removed %d temporary file(s) a killed run left in %s: %s", len(removed), folder,
                        ", ".join(sorted(removed)))
        return lock
    raise OutputFolderError(f"could not take the lock {lock}: it keeps reappearing; is another run starting there?")


def release(folder: str | os.PathLike) -> None:
    """Give the lock back (the last of this process's nested holds deletes the lock file)."""
    folder = Path(folder)
    key = str(folder.resolve())
    count = _HELD.get(key, 0)
    if count > 1:
        _HELD[key] = count - 1
        return
    _HELD.pop(key, None)
    lock = folder / LOCK_NAME
    holder = read_holder(lock)
    if holder is not None and holder.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, purpose: str = "a run", enabled: bool = True) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (``enabled=False``: only create the folder, e.g. DDP ranks > 0)."""
    if not enabled:
        yield prepare_output_folder(folder)
        return
    acquire(folder, purpose)
    try:
        yield Path(folder)
    finally:
        release(folder)

