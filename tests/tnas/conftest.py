"""Fixtures of the TNAS tests: one torch thread (tiny networks run faster without thread hand-offs
on the shared 2-core machine) and the test-scale space."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def test_space():
    from facenas.nas.space import create_space
    from facenas.plugins.tnas.space import TEST_SPACE

    return create_space("tnas", **TEST_SPACE)


def random_teacher(embedding_size: int = 16, input_size: int = 32) -> dict:
    """A randomly initialised (BN-calibrated) quarter-width r18 teacher spec for tests."""
    return {"random": "r18", "kwargs": {"num_features": embedding_size, "width_mult": 0.25, "input_size": input_size},
            "seed": 0}
