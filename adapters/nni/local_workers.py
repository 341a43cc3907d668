"""Trials of a local pipeline run (``facenas nni run-local --concurrency N``) in worker processes.

Up to N trials of the running step at a time, each in a fresh process (``spawn``; one trial per process,
so no trial inherits another's RNG state, thread settings or memory), as NNI's ``trialConcurrency`` runs
them: the scheduler decides what may start (a step waits for the one before it, a timing step runs alone),
this module only runs what it hands out and reports the ends back. Each worker's log lines carry its
trial (``[step/index]``) so that two trainings' progress can be told apart in one log. A worker dies with
the run: killing ``run-local`` (or losing the session) ends its trials too (Linux: ``PR_SET_PDEATHSIG``),
and a resumed run continues them from their checkpoints.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to end this worker when the run-local process dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: locks and partial files are released


def _trial_process(spec: Any, out_dir: str, info: Mapping[str, Any], level: int) -> None:
    """The body of a worker process: one trial, logging as ``[step/index]``; exits with the trial's status."""
    from facenas.adapters.nni.trial import run_trial

    _die_with_parent()
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    tag = f"{spec.step}/{spec.index}" + (f"-retry{spec.attempt}" if spec.attempt else "")
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{tag}] %(name)s: %(message)s", "%H:%M:%S"))
    handler._facenas = True  # type: ignore[attr-defined]  # facenas.utils.log.setup_logging keeps it
    root.addHandler(handler)
    root.setLevel(level)
    sys.exit(run_trial(spec, out_dir, dict(info)))


def run_concurrently(sched: Any, out: Path, concurrency: int, on_end: Callable[[int, int], None],
                     started: Callable[[], None] = lambda: None) -> None:
    """Run ``sched``'s trials, up to ``concurrency`` at a time, until it is finished.

    ``on_end(param_id, exit_code)`` records each trial's end (metrics, status, the saved state) in this
    process, in the order the trials end; ``started()`` is called after each start (to save the state). If this
    process is interrupted, its running trials are ended (they continue from their checkpoints when the run is
    resumed).
    """
    from facenas.errors import FacenasError

    level = logging.getLogger().getEffectiveLevel()
    ctx = multiprocessing.get_context("spawn")
    running: dict[int, tuple[int, Any]] = {}  # sentinel -> (param id, process)
    try:
        while True:
            while len(running) < concurrency and (nxt := sched.next_trial()) is not None:
                param_id, spec = nxt
                out_dir = str(spec.out_dir or out / "trials" / str(param_id))
                info = {"trial_id": f"local-{param_id}", "local": True}
                proc = ctx.Process(target=_trial_process, args=(spec, out_dir, info, level),
                                   name=f"facenas-trial-{spec.step}-{spec.index}")
                proc.start()
                running[proc.sentinel] = (param_id, proc)
                started()
                log.info("run-local: trial %s/%s started in process %d (%d running)", spec.step, spec.index,
                         proc.pid, len(running))
            if not running:
                if sched.finished:
                    return
                raise FacenasError(f"pipeline '{sched.config.name}' is stuck: no trial to run and "
                                   f"{len(sched.pending_units())} pending")
            for sentinel in multiprocessing.connection.wait(list(running)):
                param_id, proc = running.pop(sentinel)
                proc.join()
                code = proc.exitcode
                if code is None or code < 0:  # killed by a signal (out of memory, kill): the trial failed
                    log.error("run-local: trial %d: its process %d ended by signal %s", param_id, proc.pid,
                              -code if code is not None else "?")
                on_end(param_id, code if code is not None else 1)
    finally:
        for _, proc in running.values():  # interrupted: end the trials still running, then wait for them
            proc.terminate()
        for _, proc in running.values():
            proc.join(timeout=30)
