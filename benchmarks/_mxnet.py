"""A persistent worker in a separate Python that has mxnet 1.9.1 (mxnet needs numpy <= 1.23.5).

The data benchmarks compare facenas with MXNet / arcface_torch on the same files. MXNet cannot
be imported next to numpy 2, so its side runs in another interpreter given by ``--mxnet-python``
or ``$FACENAS_MXNET_PYTHON`` (e.g. ``/tmp/mxenv/bin/python`` after
``python3 -m venv /tmp/mxenv && /tmp/mxenv/bin/pip install mxnet==1.9.1 numpy==1.23.5``).

The worker stays alive so that the benchmark can interleave timed passes of both sides
(ours, theirs, ours, theirs, ...) and keep the best of each: on a shared machine the load
changes from minute to minute, and back-to-back blocks of one side would compare different loads.
A worker script defines ``handle(command: str) -> dict``; :data:`LOOP` answers one JSON line per
command line on stdin.
"""
from __future__ import annotations

import json
import os
import subprocess

ENV_VAR = "FACENAS_MXNET_PYTHON"

LOOP = r"""
import json as _json, sys as _sys
for _line in _sys.stdin:
    _cmd = _line.strip()
    if _cmd == "quit":
        break
    _sys.stdout.write(_json.dumps(handle(_cmd)) + "\n")
    _sys.stdout.flush()
"""


def mxnet_python(given: str | None) -> str | None:
    """The interpreter to use, or None (the MXNet side is then reported as not measured)."""
    return given or os.environ.get(ENV_VAR) or None


class Worker:
    """``with Worker(python, script, *args) as w: w.call("run")`` -> the dict ``handle("run")`` returned."""

    def __init__(self, python: str, script: str, *args: str):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen([python, "-c", script + LOOP, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def call(self, command: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"the mxnet worker exited ({self.proc.wait()}):\n{err[-3000:]}")
        return json.loads(line)

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a dead worker is already gone
            self.proc.kill()
