"""Pieces of the multi-node failure handling that need no process group (the real runs: test_multinode.py)."""
from __future__ import annotations

import pytest
import torch

from facenas.errors import ConfigError
from facenas.engine import distributed as D
from facenas.engine.checkpoint import (agreed_checkpoint, previous_checkpoint, read_global_step,
                                               save_train_state)


def test_timeout_from_the_environment(monkeypatch):
    monkeypatch.delenv(D.TIMEOUT_ENV, raising=False)
    assert D.dist_timeout().total_seconds() == 600
    monkeypatch.setenv(D.TIMEOUT_ENV, "45")
    assert D.dist_timeout().total_seconds() == 45
    for bad in ("soon", "0", "1e9"):
        monkeypatch.setenv(D.TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=D.TIMEOUT_ENV):
            D.dist_timeout()


def test_ranks_keep_their_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint_rank1.pt"
    for step in (3, 6, 9):
        save_train_state(path, {"global_step": step}, keep_previous=True)
    assert previous_checkpoint(path).name == "checkpoint_rank1.prev.pt"
    assert read_global_step(path) == 9 and read_global_step(previous_checkpoint(path)) == 6
    single = tmp_path / "checkpoint.pt"
    save_train_state(single, {"global_step": 1})
    save_train_state(single, {"global_step": 2})
    assert not previous_checkpoint(single).exists()
    assert agreed_checkpoint(single, D.DistInfo()) == single  # one process: no agreement needed


def test_a_lost_peer_is_one_line_naming_the_checkpoints(tmp_path):
    info = D.DistInfo(rank=1, local_rank=0, world_size=2)
    save_train_state(tmp_path / "checkpoint_rank1.pt", {"global_step": 4}, keep_previous=True)
    save_train_state(tmp_path / "checkpoint_rank1.pt", {"global_step": 6}, keep_previous=True)
    exc = RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:4242: Connection reset by peer\nmore")
    assert D.is_peer_failure(exc, info)
    assert not D.is_peer_failure(exc, D.DistInfo())  # one process: a bug, not a peer
    assert not D.is_peer_failure(RuntimeError("shape mismatch"), info)
    msg = str(D.peer_lost(exc, info, tmp_path))
    assert "\n" not in msg and msg.startswith("rank 1 of 2 lost a peer process")
    assert "step 6 (" in msg and "step 4 (" in msg and "checkpoint_rank1.prev.pt" in msg and "--resume" in msg
    assert D.PeerLostError.exit_code == 3


def test_resumed_buffers_survive_a_broadcast():
    bn = torch.nn.BatchNorm1d(3)
    mine = {"running_mean": torch.tensor([1.0, 2.0, 3.0])}
    bn.running_mean.zero_()  # what DDP's constructor would leave: rank 0's statistics
    D.restore_buffers(bn, mine)
    assert torch.equal(bn.running_mean, mine["running_mean"])
