"""``kill -9`` in tests: run a snippet in a child process that SIGKILLs itself at a given step.

The child gets no chance to clean up (no ``finally``, no atexit, no flush), as when a node dies or
the OOM killer strikes; what it leaves on disk is what a resume has to work from.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]


def kill9_at(step: int) -> Callable[[dict[str, Any]], None]:
    """An ``on_step`` hook that SIGKILLs this process right after optimiser step ``step``."""
    def on_step(record: dict[str, Any]) -> None:
        if record["step"] == step:
            os.kill(os.getpid(), signal.SIGKILL)
    return on_step


def run_killed(code: str, timeout: float = 300) -> None:
    """Run ``code`` (it calls a method with ``on_step=kill9_at(N)``) and check it died by SIGKILL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
