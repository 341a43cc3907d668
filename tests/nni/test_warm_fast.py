"""Warm trial server settings without processes (adapters/nni/warm.py): each trial's share of the cores."""
from __future__ import annotations

from facenas.adapters.nni import warm


def test_concurrent_trials_share_the_cores():
    assert warm.trial_threads(1) is None  # one trial at a time: PyTorch's own default
    assert warm.trial_threads(2, cpus=2) == 1 and warm.trial_threads(2, cpus=16) == 8
    assert warm.trial_threads(4, cpus=2) == 1  # never below one
