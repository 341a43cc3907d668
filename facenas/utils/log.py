"""Logging set-up for the CLI and trial processes."""
from __future__ import annotations

import logging
import os
import sys


def setup_logging(verbosity: int = 0) -> None:
    """Log to stderr: INFO by default, DEBUG with ``-v``, WARNING with ``-q``.

    ``FACENAS_LOG_LEVEL`` overrides. stdout is left to the commands' results (``--json``).
    """
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    env = os.environ.get("FACENAS_LOG_LEVEL")
    if env:
        level = getattr(logging, env.upper(), level)
    root = logging.getLogger()
    if not any(getattr(h, "_facenas", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._facenas = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
