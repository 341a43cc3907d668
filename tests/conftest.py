"""Shared fixtures: the real-data folder (skipped with a reason when absent) and small helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from facenas.utils.paths import DATA_ENV, shared_data_dir

# Keep torch / BLAS to the 2 cores CI has, and quiet TensorFlow's start-up chatter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set {DATA_ENV} to a folder holding celeba299/, lfw_devtest.bin, lfw.bin)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$FACENAS_SHARED_DATA`` (default: ``facenas.utils.paths.shared_data_dir()``)."""
    return _require(shared_data_dir())


@pytest.fixture(scope="session")
def celeba299(shared_data: Path) -> Path:
    """The 299-identity training RecordIO folder (train.rec / train.idx / property)."""
    return _require(shared_data / "celeba299")


@pytest.fixture(scope="session")
def lfw_devtest_bin(shared_data: Path) -> Path:
    return _require(shared_data / "lfw_devtest.bin")


@pytest.fixture(scope="session")
def lfw_bin(shared_data: Path) -> Path:
    return _require(shared_data / "lfw.bin")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small synthetic dataset folder (train.rec/.idx/property + val.bin), made once per session.

    24 training identities x 10 images and 120 verification pairs of 20 other identities, 112x112.
    """
    from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(out, SyntheticConfig(num_identities=24, images_per_identity=10, val_identities=20,
                                                 val_pairs=120, seed=0))
    return out
