"""OFA tests run torch on one thread: their tensors are tiny, and on a shared 2-core machine two
threads spend most of the time synchronising (a 48x25 matmul took 2 ms with 2 threads, 4 us with 1)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
