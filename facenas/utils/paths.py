"""Where facenas finds shared real data and writes its outputs."""
from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that points at the real-data folder (``celeba299/``, ``lfw_devtest.bin``, ``lfw.bin``).
DATA_ENV = "FACENAS_SHARED_DATA"

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The real-data folder: ``$FACENAS_SHARED_DATA``, else ``shared/data`` beside the repository
    (the layout CI checks the repository out in)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"
