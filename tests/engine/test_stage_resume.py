"""engine.train run again in its own folder (a resumed pipeline) continues from the checkpoint left there."""
from __future__ import annotations

import pytest
import torch

import facenas.plugins.engine.trainer as trainer
from facenas.nas.stages import run_stage_locally

from .conftest import tiny_config, tiny_loader


class _Interrupt(Exception):
    pass


def test_stage_resumes_the_checkpoint_of_a_stopped_trial_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_make_loader", lambda cfg, dist: tiny_loader())
    params = {"config": tiny_config(tmp_path, checkpoint_every=2, num_epoch=2).to_dict() | {"output": None}}
    reference = run_stage_locally("engine.train", params, str(tmp_path / "reference"))
    real_train = trainer.train

    def killed_at_step_7(cfg, **kwargs):
        def on_step(info):
            if info["step"] == 7:  # the last checkpoint is at step 6
                raise _Interrupt
        return real_train(cfg, on_step=on_step, **kwargs)

    monkeypatch.setattr(trainer, "train", killed_at_step_7)
    with pytest.raises(_Interrupt):
        run_stage_locally("engine.train", params, str(tmp_path / "trial"))
    state = torch.load(tmp_path / "trial" / "train" / "checkpoint.pt", weights_only=True)
    assert state["global_step"] == 6
    steps: list[int] = []

    def counted(cfg, **kwargs):
        return real_train(cfg, on_step=lambda info: steps.append(info["step"]), **kwargs)

    monkeypatch.setattr(trainer, "train", counted)
    resumed = run_stage_locally("engine.train", params, str(tmp_path / "trial"))
    assert steps == list(range(7, 13))  # continued after the checkpoint, not trained again from step 1
    assert resumed["global_step"] == reference["global_step"] == 12 and resumed["loss"] == reference["loss"]
    a = torch.load(tmp_path / "reference" / "train" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "trial" / "train" / "last.pt", weights_only=True)
    sa, sb = a.get("state_dict", a), b.get("state_dict", b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor))
