"""The shared loop (facenas.engine.loop): kill -9 mid-epoch + resume is bit for bit, with a task whose
data order and augmentation draw from the RNGs the loop must restore."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from facenas.engine.loop import Diverged, Loop, LoopConfig, LoopTask, TrainingDivergedError
from facenas.errors import ConfigError, OutputFolderError
from tests.kill9 import run_killed


class TinyTask(LoopTask):
    """A linear classifier on random data, shuffled by the loader's generator, noised by torch's RNG."""

    epochs = 3
    desc = "tiny"

    def __init__(self, seed: int = 0, nan_at: int | None = None):
        torch.manual_seed(seed)
        data = torch.utils.data.TensorDataset(torch.randn(40, 6), torch.randint(0, 3, (40,)))
        self.data_generator = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(data, batch_size=6, shuffle=True, generator=self.data_generator)
        self.model = nn.Linear(6, 3)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.nan_at = nan_at

    def total_steps(self):
        return self.epochs * len(self.loader)

    def batches(self, state):
        return self.loader

    def step(self, batch, state):
        x, y = batch
        x = x + 0.1 * torch.randn_like(x)
        loss = nn.functional.cross_entropy(self.model(x), y)
        if self.nan_at is not None and state.global_step + 1 >= self.nan_at:
            raise Diverged("loss", float("nan"), "lower lr", lr=0.1)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), "lr": 0.1}

    def end_epoch(self, state):
        return {"default": -1.0}

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def final(self, state):
        return {"weight_sum": float(self.model.weight.detach().sum())}


def _run(out, on_step=None, **kw):
    task = TinyTask()
    final = Loop(task, LoopConfig(output=str(out), checkpoint_every=4, log_every=1, **kw), {"lr": 0.1},
                 on_step=on_step).run()
    return task, final


def test_kill9_mid_epoch_then_resume_is_bit_for_bit(tmp_path):
    straight, final_a = _run(tmp_path / "a")
    run_killed(f"""
        from tests.engine.test_loop import _run
        from tests.kill9 import kill9_at
        _run({str(tmp_path / 'b')!r}, on_step=kill9_at(10))
    """)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["global_step"] == 8 and state["step_in_epoch"] == 1  # 7 steps per epoch
    resumed, final_b = _run(tmp_path / "b", resume=True)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert final_a["weight_sum"] == final_b["weight_sum"] and final_b["global_step"] == 21
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "train"]
    assert steps == list(range(1, 22))  # each step logged once: the killed run's steps 9, 10 were cut back


def test_finished_run_resumed_reports_its_final_json(tmp_path):
    _, final = _run(tmp_path)
    again = _run(tmp_path, resume=True)[1]
    assert again == json.loads((tmp_path / "final.json").read_text()) == json.loads(json.dumps(final))


def test_fresh_run_into_a_used_folder_is_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(OutputFolderError, match="--resume"):
        _run(tmp_path)
    _run(tmp_path, overwrite=True)


def test_resume_with_other_settings_names_them(tmp_path):
    _run(tmp_path, max_minutes=None)
    task = TinyTask()
    with pytest.raises(ConfigError, match=r"lr: 0.1 -> 0.2"):
        Loop(task, LoopConfig(output=str(tmp_path), resume=True), {"lr": 0.2}).run()


def test_divergence_names_step_and_last_good_checkpoint(tmp_path):
    task = TinyTask(nan_at=6)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 6 .*checkpoint\.pt \(step 4\).*lower lr"):
        Loop(task, LoopConfig(output=str(tmp_path), checkpoint_every=4), {}).run()


def test_time_budget_stops_and_resume_finishes(tmp_path):
    task = TinyTask()
    final = Loop(task, LoopConfig(output=str(tmp_path), max_minutes=0.0), {"lr": 0.1}).run()
    assert final["stopped_early"] and final["global_step"] == 1
    _, done = _run(tmp_path, resume=True)
    _, ref = _run(tmp_path / "ref")
    assert done["weight_sum"] == ref["weight_sum"]


def test_must_match_checks_only_the_named_settings(tmp_path):
    Loop(TinyTask(), LoopConfig(output=str(tmp_path), max_minutes=0.0), {"lr": 0.1, "batch": 6}).run()
    with pytest.raises(ConfigError, match=r"\(batch: 6 -> 8\).*batch must stay as they were"):
        Loop(TinyTask(), LoopConfig(output=str(tmp_path), resume=True, must_match=("batch",)),
             {"lr": 0.2, "batch": 8}).run()
    task = TinyTask()
    task.images_per_step = 6
    final = Loop(task, LoopConfig(output=str(tmp_path), resume=True, must_match=("batch",), log_every=1),
                 {"lr": 0.2, "batch": 6}).run()  # lr may change
    assert final["global_step"] == 21
    rows = [json.loads(line) for line in (tmp_path / "train_metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if r["type"] == "train"]
    assert len(trained) == 20 and all(r["images_per_s"] > 0 for r in trained)
