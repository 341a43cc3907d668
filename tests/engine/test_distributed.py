"""DDP: a 2-process gloo run of ``train`` gives the weights of one process on the same global batch.

The backbone here has no BatchNorm on purpose: BN normalises with per-process batch statistics
under DDP (as in arcface_torch; SyncBatchNorm is CUDA-only), which legitimately differs from one
process on the whole batch. Everything else -- gradient averaging, the sharded PartialFC centres,
the all-gathered embeddings and the distributed cross-entropy -- must agree to float tolerance.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from facenas.plugins.engine import train

from .conftest import tiny_config, tiny_loader


class NoBatchNormNet(nn.Module):
    def __init__(self, embedding_size: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.PReLU(8), nn.Conv2d(8, 16, 3, 2, 1), nn.PReLU(16),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, embedding_size))

    def forward(self, x):
        return self.body(x)


def _config(out, **changes):
    # no gradient clipping: a clipped step would hide a wrongly scaled gradient
    return tiny_config(out, rec="memory", num_epoch=2, checkpoint_every=0, sample_rate=1.0, clip_grad_norm=0.0,
                       **changes)


def _worker(rank: int, world: int, port: int, out: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    try:
        cfg = _config(Path(out), batch_size=4)
        cfg.output = out
        result = train(cfg, model=NoBatchNormNet(),
                       train_loader=tiny_loader(batch_size=4, rank=rank, world=world, flip=False))
        torch.save(result.model.state_dict(), os.path.join(out, f"weights_rank{rank}.pt"))
        queue.put((rank, "ok", result.global_step))
    except BaseException as exc:  # report instead of leaving the parent waiting
        queue.put((rank, repr(exc), -1))
        raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_matches_one_process(tmp_path):
    single_cfg = _config(tmp_path / "single", batch_size=8)
    single = train(single_cfg, model=NoBatchNormNet(), train_loader=tiny_loader(batch_size=8, flip=False))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    out = str(tmp_path / "ddp")
    procs = [ctx.Process(target=_worker, args=(r, 2, port, out, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=300) for _ in procs), key=lambda r: r[0])
    failures = [r[1] for r in results if r[2] < 0]
    assert not failures, failures
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    reference = single.model.state_dict()
    for rank, _, steps in results:
        assert steps == single.global_step == 12
        weights = torch.load(os.path.join(out, f"weights_rank{rank}.pt"), weights_only=True)
        for key, value in reference.items():
            scale = value.abs().max().clamp_min(1e-3)
            assert (weights[key] - value).abs().max() <= 2e-5 * scale, (rank, key)
    # the class centres: rank shards concatenated == the single-process matrix
    shards = [torch.load(os.path.join(out, f"checkpoint_rank{r}.pt"), weights_only=True)["head"]["weight"]
              for r in range(2)]
    full = torch.load(tmp_path / "single" / "run" / "checkpoint.pt", weights_only=True)["head"]["weight"]
    joined = torch.cat(shards)
    assert joined.shape == full.shape
    assert (joined - full).abs().max() <= 2e-5 * full.abs().max()
