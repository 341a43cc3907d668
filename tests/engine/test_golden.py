"""engine.train's numbers are an asset: a tiny CPU run ends with exactly the weights and per-step
losses it had when these hashes were computed (before engine.train moved onto the shared loop,
issue 15), so a change to the loop, the data order or the RNG use cannot slip through unnoticed.

The hashes hold on the platform they were computed on (tests/golden.py); another torch or CPU may change kernels
(and so the last bits), which is reported as a skip naming both versions.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import torch

from facenas.plugins.engine import train

from .conftest import tiny_config, tiny_loader
from tests.golden import require_recorded_platform


#: case -> (sha256 of the final backbone + head state, sha256 of the per-step losses, final loss)
GOLDEN = {
    "sgd_workers0": ("45c87ee893c6758bd94717b80cc9cbc76e7ecff0c6be1f28d1bedb6ec7587128",
                     "c14d8216c11b87f683c01ed60ca159d96d6635849ae399f9f4e78650666fcb2c", 18.245477199554443),
    "adamw_acc2_workers2": ("165cb89b707d21b5adb43844896f5f6dd8ac28a5fe675e68b47378f585cf3183",
                            "60fb03604e5931b91c32a7b5725b6ec63570a0f743e2bbc3975eb9f4eb4b2f72", 26.998521486918133),
}

CASES = {
    "sgd_workers0": dict(num_workers=0),
    # partial PartialFC sampling, gradient accumulation (verification at odd steps skips its checkpoint)
    "adamw_acc2_workers2": dict(num_workers=2, sample_rate=0.5, gradient_acc=2, optimizer="adamw", lr=1e-3,
                                weight_decay=0.1),
}


class EmbeddingProbe:
    """A verification stand-in that depends on the weights: the cosine of two fixed inputs' embeddings."""

    def __init__(self):
        self.x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def __call__(self, model):
        e = torch.nn.functional.normalize(model(self.x))
        return {"tiny_acc": float((e[0] * e[1]).sum()), "tiny_acc_std": 0.0}


def _feed(h: Any, key: str, value: Any) -> None:
    h.update(key.encode())
    if isinstance(value, torch.Tensor):
        h.update(value.contiguous().numpy().tobytes())
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            _feed(h, f"{key}.{k}", value[k])
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _feed(h, f"{key}.{i}", item)
    else:
        h.update(repr(value).encode())


def weights_digest(checkpoint: dict[str, Any]) -> str:
    """sha256 over the checkpoint's backbone and head state (tensors byte for byte, PartialFC's extra state too)."""
    h = hashlib.sha256()
    for part in ("backbone", "head"):
        for k in sorted(checkpoint[part]):
            _feed(h, f"{part}.{k}", checkpoint[part][k])
    return h.hexdigest()


def losses_digest(metrics_file) -> str:
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["type"] == "train"]
    assert len(losses) == 18
    return hashlib.sha256(json.dumps(losses).encode()).hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiny_run_reproduces_its_golden_weights_and_losses(tmp_path, case):
    require_recorded_platform()
    changes = CASES[case]
    cfg = tiny_config(tmp_path, checkpoint_every=4, verbose=5, val_every_epoch=1, warmup_epoch=1, device="cpu",
                      **changes)
    result = train(cfg, train_loader=tiny_loader(num_workers=changes["num_workers"]), evaluator=EmbeddingProbe())
    out = tmp_path / "run"
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["global_step"] == result.global_step == 18
    weights, losses, loss = GOLDEN[case]
    assert (weights_digest(checkpoint), losses_digest(out / "train_metrics.jsonl"), result.metrics["loss"]) \
        == (weights, losses, loss)
