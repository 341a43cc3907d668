"""Output folders (issue 18, item 5): one writer per folder, no silent overwrite, an honest resume
of a finished run, and what a killed run leaves behind cleaned up by the next start."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from facenas.errors import ConfigError, OutputFolderError
from facenas.plugins.engine.trainer import train
from facenas.utils.lock import LOCK_NAME, holder_record

from .conftest import tiny_config, tiny_loader


class _Interrupt(Exception):
    pass


def _kill_at(step):
    def on_step(info):
        if info["step"] == step:
            raise _Interrupt(step)
    return on_step


def _rows(out):
    return [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def live_other_process():
    """A process of this host that is alive for the test (holds a lock in its name)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_training_into_a_held_folder_fails_naming_the_holder(tmp_path, live_other_process):
    cfg = tiny_config(tmp_path, num_epoch=1)
    out = tmp_path / "run"
    out.mkdir()
    holder = {**holder_record(), "pid": live_other_process.pid, "start_ticks": None, "command": "facenas train a.py"}
    (out / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(OutputFolderError) as info:
        train(cfg, train_loader=tiny_loader())
    msg = str(info.value)
    assert f"pid {live_other_process.pid} on {socket.gethostname()}" in msg and "facenas train a.py" in msg
    assert "\n" not in msg
    assert not (out / "train_metrics.jsonl").exists() and not (out / "checkpoint.pt").exists()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == live_other_process.pid  # not taken over


def test_a_lock_from_another_host_is_refused_with_the_way_out(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({**holder_record(), "host": "elsewhere.example"}))
    with pytest.raises(OutputFolderError, match=f"on elsewhere.example .*delete {out / LOCK_NAME}"):
        train(tiny_config(tmp_path, num_epoch=1), train_loader=tiny_loader())


def test_a_kill_minus_nine_leftover_is_cleaned_and_resume_logs_each_step_once(tmp_path):
    """A dead holder's lock is taken over, the atomic writer's .tmp files are deleted, the metrics
    log loses the records written after the checkpoint, and last.pt matches checkpoint.pt."""
    common = dict(checkpoint_every=4, num_epoch=2)
    cfg = tiny_config(tmp_path, **common)
    out = tmp_path / "run"
    with pytest.raises(_Interrupt):
        train(cfg, train_loader=tiny_loader(), on_step=_kill_at(11))  # 6 steps an epoch: checkpoint at 8
    assert max(r["step"] for r in _rows(out) if r["type"] == "train") == 11
    # what kill -9 leaves: the lock of a process that is gone, a half-written checkpoint, last.pt behind
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(json.dumps({**holder_record(), "pid": int(dead.stdout)}))
    (out / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"half a checkpoint")
    (out / ".last.pt.x_y_z_12.tmp").write_bytes(b"half")
    old_last = torch.load(out / "last.pt", weights_only=True)
    (out / "last.pt").unlink()
    resumed = train(cfg.replace(resume=True), train_loader=tiny_loader())
    assert resumed.global_step == 12
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / LOCK_NAME).exists()  # released at the end
    steps = [r["step"] for r in _rows(out) if r["type"] == "train"]
    assert steps == list(range(1, 13)), steps  # 9..11 logged once, not twice
    assert [r["type"] for r in _rows(out)].count("final") == 1
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["meta"]["global_step"] == torch.load(out / "checkpoint.pt", weights_only=True)["global_step"] == 12
    assert old_last["meta"]["global_step"] == 8


def test_a_fresh_run_refuses_a_finished_folder_and_overwrite_replaces_it(tmp_path):
    cfg = tiny_config(tmp_path, num_epoch=1)
    out = tmp_path / "run"
    first = train(cfg, train_loader=tiny_loader())
    final = (out / "final.json").read_text()
    with pytest.raises(OutputFolderError, match="already holds a finished run .*--resume.*--overwrite"):
        train(cfg, train_loader=tiny_loader())
    assert (out / "final.json").read_text() == final
    again = train(cfg.replace(overwrite=True, seed=8), train_loader=tiny_loader())
    assert again.global_step == first.global_step
    assert [r["type"] for r in _rows(out)].count("final") == 1  # the old log went with the old run
    with pytest.raises(ConfigError, match="not both"):
        cfg.replace(resume=True, overwrite=True)


def test_resume_of_a_finished_run_reports_its_result_without_rewriting_it(tmp_path):
    cfg = tiny_config(tmp_path, num_epoch=1)
    out = tmp_path / "run"
    first = train(cfg, train_loader=tiny_loader())
    before = (out / "final.json").read_text()
    log_before = (out / "train_metrics.jsonl").read_text()
    again = train(cfg.replace(resume=True), train_loader=tiny_loader())
    assert (out / "final.json").read_text() == before
    assert (out / "train_metrics.jsonl").read_text() == log_before
    assert again.metrics["loss"] == first.metrics["loss"] > 0.0
    assert again.global_step == first.global_step
    # more epochs asked for: the run continues from its checkpoint
    longer = train(cfg.replace(resume=True, num_epoch=2), train_loader=tiny_loader())
    assert longer.global_step == 2 * first.global_step and longer.metrics["loss"] > 0.0


def test_output_naming_a_file_is_one_line(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):
        train(tiny_config(tmp_path, output=str(target)), train_loader=tiny_loader())
    with pytest.raises(OutputFolderError, match="a part of the path is a file"):
        train(tiny_config(tmp_path, output=str(target / "sub")), train_loader=tiny_loader())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    from facenas.utils.lock import acquire, release

    folder = tmp_path / "f"
    acquire(folder, "outer")
    acquire(folder, "inner")  # a stage that trains into its own folder
    release(folder)
    assert (folder / LOCK_NAME).exists()
    code = ("import sys; from facenas.utils.lock import acquire\n"
            "try:\n    acquire(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e); sys.exit(5)\n")
    other = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60)
    assert other.returncode == 5 and f"pid {os.getpid()}" in other.stdout
    release(folder)
    assert not (folder / LOCK_NAME).exists()
    other = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60)
    assert other.returncode == 0  # free again (and that process's exit left a stale lock behind)
    acquire(folder, "after a dead holder")
    release(folder)


def test_a_training_stage_run_again_in_its_folder_continues_it(tmp_path):
    """NNI re-queues a trial interrupted by a stop into the same folder: the stage resumes there."""
    from facenas.plugins.engine.stages import config_from_params

    base = {k: v for k, v in tiny_config(tmp_path, num_epoch=1, checkpoint_every=2).to_dict().items() if k not in ("resume", "output")}
    params = {"config": base}
    cfg = config_from_params(params, tmp_path / "trial")
    assert not cfg.resume and cfg.output == str(tmp_path / "trial" / "train")
    with pytest.raises(_Interrupt):
        train(cfg, train_loader=tiny_loader(), on_step=_kill_at(5))  # checkpoint at step 4
    again = config_from_params(params, tmp_path / "trial")
    assert again.resume
    assert train(again, train_loader=tiny_loader()).global_step == 6
    assert not config_from_params({**params, "resume": False}, tmp_path / "trial").resume  # said explicitly


def _search_writers():
    from facenas.plugins.enas.search import run_search as enas_search
    from facenas.plugins.ofa.train import SupernetTrainConfig, train_supernet
    from facenas.nas.stages import run_stage_locally
    from facenas.plugins.tnas.search import TnasSearchConfig, run_search as tnas_search

    return {
        "stage": lambda out: run_stage_locally("toy.evaluate", {}, str(out)),
        "enas": lambda out: enas_search(None, out),  # the lock comes before the config is read
        "tnas": lambda out: tnas_search(TnasSearchConfig(output=str(out), teacher="t.pt", rec="synthetic",
                                                         target_width_ratio=0.5)),
        "ofa": lambda out: train_supernet(SupernetTrainConfig(output=str(out), rec="synthetic")),
    }


@pytest.mark.parametrize("writer", ["stage", "enas", "tnas", "ofa"])
def test_every_search_writer_takes_the_output_lock(tmp_path, live_other_process, writer):
    out = tmp_path / writer
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({**holder_record(), "pid": live_other_process.pid, "start_ticks": None}))
    with pytest.raises(OutputFolderError, match=f"in use by another run: pid {live_other_process.pid}"):
        _search_writers()[writer](out)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written


def test_stale_lock_rules():
    from facenas.utils.lock import EMPTY_LOCK_GRACE_S, is_stale

    me = holder_record()
    assert not is_stale(me, age_s=0.0)  # alive
    if me["start_ticks"] is not None:  # the pid now runs a process that started at another time: reused
        assert is_stale({**me, "start_ticks": me["start_ticks"] + 1}, age_s=0.0)
    assert not is_stale({**me, "host": "elsewhere.example", "pid": 1}, age_s=1e6)  # cannot check: not stale
    assert is_stale({**me, "pid": -1}, age_s=0.0)
    assert not is_stale(None, age_s=0.0) and is_stale(None, age_s=EMPTY_LOCK_GRACE_S + 1)  # empty lock file
