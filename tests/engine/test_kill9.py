"""engine.train on the shared loop: a real ``kill -9`` mid-epoch, then ``--resume``, ends with the
backbone, PartialFC head, per-step losses and final loss of the uninterrupted run, bit for bit
(in-process loader and two worker processes; the golden runs of test_golden.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facenas.plugins.engine import train
from tests.kill9 import run_killed

from .conftest import tiny_config, tiny_loader
from tests.golden import RECORDED, platform

from .test_golden import CASES, GOLDEN, EmbeddingProbe, losses_digest, weights_digest

#: case -> (the step the run is killed after, the checkpoint it resumes from, that checkpoint's batch in its epoch)
KILLS = {"sgd_workers0": (11, 10, 4),  # the checkpoint of the verification at step 10
         "adamw_acc2_workers2": (9, 8, 2)}  # checkpoint_every=4 (step 9 is between accumulated gradients)


def train_case(output: str, case: str, on_step=None, **changes):
    """One of test_golden's runs (6 steps an epoch, 3 epochs) into ``output``."""
    settings = CASES[case]
    cfg = tiny_config(Path(output), checkpoint_every=4, verbose=5, val_every_epoch=1, warmup_epoch=1, device="cpu",
                      **settings, **changes)
    return train(cfg, train_loader=tiny_loader(num_workers=settings["num_workers"]), evaluator=EmbeddingProbe(),
                 on_step=on_step)


# the loader-worker / accumulation case is slow-marked (fast suite budget); the plain case stays in it
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "adamw_acc2_workers2" else c
                                  for c in sorted(KILLS)])
def test_kill9_mid_epoch_then_resume_is_bit_for_bit(tmp_path, case):
    killed_at, resumes_at, batch = KILLS[case]
    if platform() == RECORDED:
        expected = GOLDEN[case]  # the uninterrupted run's numbers (test_golden checks them)
    else:  # another platform: compare with an uninterrupted run on this one
        reference = train_case(str(tmp_path / "straight"), case)
        straight = tmp_path / "straight" / "run"
        expected = (weights_digest(torch.load(straight / "checkpoint.pt", weights_only=True)),
                    losses_digest(straight / "train_metrics.jsonl"), reference.metrics["loss"])
    run_killed(f"""
        from tests.engine.test_kill9 import train_case
        from tests.kill9 import kill9_at
        train_case({str(tmp_path / 'killed')!r}, {case!r}, on_step=kill9_at({killed_at}))
    """)
    out = tmp_path / "killed" / "run"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (state["global_step"], state["epoch"], state["step_in_epoch"]) == (resumes_at, 1, batch)
    assert not (out / "final.json").exists()
    steps: list[int] = []
    resumed = train_case(str(tmp_path / "killed"), case, on_step=lambda info: steps.append(info["step"]), resume=True)
    assert steps == list(range(resumes_at + 1, 19))  # continued after the checkpoint
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    # backbone and head (PartialFC's sampler state too); each step logged once with the loss it had;
    # the last epoch's mean loss exactly the uninterrupted run's
    assert (weights_digest(final), losses_digest(out / "train_metrics.jsonl"), resumed.metrics["loss"]) == expected
    assert all(torch.equal(v, final["backbone"][k]) for k, v in resumed.model.state_dict().items())
    rows = [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in rows].count("final") == 1
