"""Batched units: a step with ``batch: K`` runs its N units in ceil(N / K) trials, each unit still its own record."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from facenas.adapters.nni.envelope import from_parameters
from facenas.adapters.nni.pipeline import PipelineConfig, PipelineScheduler, run_pipeline_locally
from facenas.errors import ConfigError
from facenas.utils.io import write_json

TOY = {"stem/width": 8, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"}


def _config(batch: int, trials: int = 5) -> PipelineConfig:
    return PipelineConfig.from_dict({"steps": [
        {"name": "supernet", "stage": "toy.train_supernet", "params": {"epochs": 1}},
        {"name": "evaluate", "stage": "toy.evaluate", "trials": trials, "batch": batch,
         "sample": {"space": "toy", "strategy": "random", "seed": 0},
         "params": {"supernet": "${supernet.result.checkpoint}", "epochs": 1, "fail_if": TOY}},
        {"name": "search", "stage": "toy.search", "params": {"candidates": "${evaluate[*]}", "epochs": 1, "top_k": 1,
                                                             "supernet": "${supernet.result.checkpoint}"}},
    ]})


def test_a_step_of_n_units_takes_ceil_n_over_batch_trials(tmp_path):
    sched = PipelineScheduler(_config(batch=2), tmp_path)
    pid, spec = sched.next_trial()
    assert spec.batch is None  # batch 1 (the default) for the supernet step
    write_json(Path(spec.out_dir) / "result.json", {"status": "SUCCEEDED", "metrics": {"default": 1.0},
                                                    "result": {"checkpoint": str(tmp_path / "ckpt")}})
    (tmp_path / "ckpt").write_text("x")
    sched.on_final(pid, {"default": 1.0})
    sched.on_end(pid, True, "SUCCEEDED", "T0")
    trials = []
    while (nxt := sched.next_trial()) is not None:
        trials.append(nxt)
    assert [len(spec.batch) if spec.batch else 1 for _, spec in trials] == [2, 2, 1]
    assert len(trials) == math.ceil(5 / 2)
    assert [m["index"] for _, spec in trials for m in (spec.batch or [{"index": spec.index}])] == [0, 1, 2, 3, 4]
    # the units travel in the NNI parameters, each with its sample, folder and inputs
    decoded = from_parameters(json.loads(json.dumps(trials[0][1].to_parameters())))
    assert [m["out_dir"] for m in decoded.batch] == [str(tmp_path / "evaluate" / "000"), str(tmp_path / "evaluate" / "001")]
    assert all(m["inputs"] == [str(tmp_path / "ckpt")] and "sample" in m["params"] for m in decoded.batch)
    # a batched trial ends: each unit as its result.json says (unit 1 failed, unit 0 succeeded)
    pid, spec = trials[0]
    for member, status in zip(spec.batch, ("SUCCEEDED", "FAILED")):
        write_json(Path(member["out_dir"]) / "result.json", {"status": status, "metrics": {"default": 0.7}})
    sched.on_final(pid, {"default": 0.7, "units": 2.0})
    sched.on_end(pid, True, "SUCCEEDED", "T1")
    statuses = {u.index: u.status for u in sched.units.values() if u.step == "evaluate" and u.group == pid}
    assert statuses == {0: "succeeded", 1: "failed"}
    for pid, spec in trials[1:]:
        for member in spec.batch or [{"out_dir": spec.out_dir}]:
            write_json(Path(member["out_dir"]) / "result.json", {"status": "SUCCEEDED", "metrics": {"default": 0.5}})
        sched.on_end(pid, True, "SUCCEEDED", f"T{pid}")
    _, search = sched.next_trial()
    assert search.step == "search" and len(search.params["candidates"]) == 4  # every successful unit


def test_batch_must_be_positive():
    with pytest.raises(ConfigError, match="batch=0"):
        _config(batch=0).step_configs()


def test_batched_pipeline_runs_locally_with_a_record_per_unit(tmp_path):
    sched = run_pipeline_locally(_config(batch=3, trials=4), tmp_path)
    assert sched.finished
    units = [u for u in sched.units.values() if u.step == "evaluate"]
    assert len(units) == 4 and [u.group is not None for u in units] == [True, True, True, False]  # 3 + 1
    for u in units:
        record = json.loads((Path(u.out_dir) / "result.json").read_text())
        assert record["status"] in ("SUCCEEDED", "FAILED")
        assert (record["nni"].get("batch") or {}).get("size") == (3 if u.group is not None else None)
    assert sched.step_state["search"]["status"] == "done"


def test_an_exclusive_step_runs_its_trials_one_at_a_time_and_a_batch_whole(tmp_path):
    from tests.nni.test_pipeline import _drain, _finish

    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "cands", "stage": "toy.evaluate", "trials": 2},
        {"name": "timed", "stage": "toy.evaluate", "trials": 3, "exclusive": True},
        {"name": "timed_batched", "stage": "toy.evaluate", "trials": 4, "exclusive": True, "batch": 2},
    ]})
    sched = PipelineScheduler(cfg, tmp_path)
    cands = _drain(sched)
    assert [s.step for _, s in cands] == ["cands", "cands"]  # an ordinary step: all at once
    for trial in cands:
        _finish(sched, *trial)
    for index in range(3):  # one at a time: nothing else runs beside a measurement
        (trial,) = _drain(sched)
        assert (trial[1].step, trial[1].index) == ("timed", index)
        _finish(sched, *trial)
    (trial,) = _drain(sched)
    assert trial[1].step == "timed_batched" and len(trial[1].batch) == 2  # the batch is one trial


def test_timing_stages_are_exclusive_unless_the_step_says_otherwise(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "lat", "stage": "runtime.latency", "params": {"model": "x"}},
        {"name": "lut", "stage": "runtime.lut", "params": {}},
        {"name": "lat_shared", "stage": "runtime.latency", "params": {"model": "x"}, "exclusive": False},
        {"name": "toy", "stage": "toy.evaluate"},
    ]})
    sched = PipelineScheduler(cfg, tmp_path)
    assert sched.exclusive == {"lat": True, "lut": True, "lat_shared": False, "toy": False}
