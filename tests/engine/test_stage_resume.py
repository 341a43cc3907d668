"""engine.train run again in its own folder (a resumed pipeline) continues from the checkpoint left there."""
from __future__ import annotations

import pytest
import torch

import facenas.plugins.engine.trainer as trainer
from facenas.nas.stages import run_stage_locally

from .conftest import tiny_config, tiny_loader


class _Interrupt(Exception):
    pass


def _killed_at(step: int, real_train):
    """``trainer.train`` that stops the run (as a kill would) when it reaches ``step``."""
    def train(cfg, **kwargs):
        def on_step(info):
            if info["step"] == step:
                raise _Interrupt
        return real_train(cfg, on_step=on_step, **kwargs)
    return train


def test_stage_resumes_the_checkpoint_of_a_stopped_trial_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_make_loader", lambda cfg, dist: tiny_loader())
    params = {"config": tiny_config(tmp_path, checkpoint_every=2, num_epoch=2).to_dict() | {"output": None}}
    reference = run_stage_locally("engine.train", params, str(tmp_path / "reference"))
    real_train = trainer.train

    monkeypatch.setattr(trainer, "train", _killed_at(7, real_train))  # the last checkpoint is at step 6
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


def test_stage_starts_over_a_trial_stopped_before_its_first_checkpoint(tmp_path, monkeypatch, caplog):
    """Killed before any checkpoint (config.json and the metrics log only): run again, it trains from step 1
    in its folder, as a fresh run would, instead of failing on "an interrupted run"."""
    monkeypatch.setattr(trainer, "_make_loader", lambda cfg, dist: tiny_loader())
    params = {"config": tiny_config(tmp_path, checkpoint_every=4, num_epoch=1).to_dict() | {"output": None}}
    reference = run_stage_locally("engine.train", params, str(tmp_path / "reference"))
    real_train = trainer.train

    monkeypatch.setattr(trainer, "train", _killed_at(2, real_train))
    with pytest.raises(_Interrupt):
        run_stage_locally("engine.train", params, str(tmp_path / "trial"))
    left = tmp_path / "trial" / "train"
    assert not list(left.glob("checkpoint*.pt")) and (left / "config.json").is_file()
    monkeypatch.setattr(trainer, "train", real_train)
    with caplog.at_level("WARNING"):
        again = run_stage_locally("engine.train", params, str(tmp_path / "trial"))
    assert "stopped before its first checkpoint" in caplog.text
    assert again["global_step"] == reference["global_step"] and again["loss"] == reference["loss"]


def test_a_finished_trial_folder_is_not_started_over(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_make_loader", lambda cfg, dist: tiny_loader())
    params = {"config": tiny_config(tmp_path, checkpoint_every=4, num_epoch=1).to_dict() | {"output": None}}
    run_stage_locally("engine.train", params, str(tmp_path / "trial"))
    for ckpt in (tmp_path / "trial" / "train").glob("checkpoint*.pt"):
        ckpt.unlink()  # a finished run without its checkpoint: still refused, never silently replaced
    with pytest.raises(Exception, match="a finished run"):
        run_stage_locally("engine.train", params, str(tmp_path / "trial"))
