"""ENAS tests run torch on one thread.

The ENAS tests are many small forward/backward passes and LSTM steps. With two OpenMP threads on
a machine whose cores are already busy, each such op waits for a descheduled worker thread and
the tests measured up to 200 times slower (a 1 MFLOP forward pass took seconds); one thread keeps
them fast and deterministic. The previous setting is restored after each test.
"""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
