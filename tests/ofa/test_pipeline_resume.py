"""A run of an OFA experiment file resumes with a revised file: finished steps keep their trials.

The CPU-scale run of recipes/nni/ofa_cpu.yml was started with an earlier version of the file (a
20-epoch ``reference`` training, searches under its latency); the revised file keeps the names and
parameters of the steps that had run (the latency tables) or were running (the supernet), so
resuming it with ``facenas nni run-local`` keeps their trials. ``data/ofa_cpu_state_started.json``
is that run's ``advisor_state.json`` (the data folder and the run folder as placeholders).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from facenas.adapters.nni.pipeline import PipelineConfig, _resume_local, PipelineScheduler, pipeline_config_of

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "nni"
STARTED = Path(__file__).resolve().parent / "data" / "ofa_cpu_state_started.json"


def _config(name: str) -> PipelineConfig:
    return pipeline_config_of(yaml.safe_load((RECIPES / name).read_text())["tuner"])


def test_the_started_ofa_cpu_run_resumes_with_the_revised_file(tmp_path, monkeypatch, caplog):
    data = tmp_path / "data"
    monkeypatch.setenv("FACENAS_SHARED_DATA", str(data))
    run = tmp_path / "run"
    text = STARTED.read_text().replace("$SHARED_DATA", str(data)).replace("$RUN_DIR", str(run))
    run.mkdir()
    (run / "advisor_state.json").write_text(text)
    checkpoint = run / "supernet" / "000" / "supernet" / "checkpoint.pt"  # what the running supernet left
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"state")
    saved = json.loads(text)
    sched = PipelineScheduler(_config("ofa_cpu.yml"), run, experiment_id="local")
    with caplog.at_level(logging.INFO, logger="facenas.adapters.nni.pipeline"):
        _resume_local(sched, run / "advisor_state.json")
    for step in ("lut_onnxruntime", "lut_tflite"):
        assert f"step '{step}' unchanged: kept (done, 1 finished trial(s))" in caplog.text
    assert "step 'supernet' unchanged: kept (running" in caplog.text and "runs again" not in caplog.text
    assert [(u.step, u.status) for u in sorted(sched.units.values(), key=lambda u: u.param_id)] == [
        ("lut_onnxruntime", "succeeded"), ("lut_tflite", "succeeded")]
    # the tables' trials stay referable (the searches' bounds read them; here from the kept state, as there is
    # no result.json in this copy)
    assert sched.resolve("${lut_tflite.metrics.p75_ms}", {}) == saved["units"][1]["metrics"]["p75_ms"]
    pid, spec = sched.next_trial()  # the supernet goes on in its own folder, from its checkpoint, same params
    assert (spec.step, spec.index, spec.attempt, pid) == ("supernet", 0, 0, saved["next_param_id"])
    assert spec.out_dir == str(run / "supernet" / "000") and checkpoint.is_file()
    assert spec.params == saved["config"]["steps"][2]["params"]
    assert [s.name for s in sched.steps][:3] == [s["name"] for s in saved["config"]["steps"]][:3]


@pytest.mark.slow
def test_ofa_test_run_resumes_with_revised_later_steps(tmp_path, monkeypatch, caplog):
    """ofa_test.yml at toy scale: run an earlier shape of the file until a later step, stop; resume with the
    file as it is: the finished steps' trials are kept and not run again, a changed step runs again, every
    new step runs, and the record reads as bench_ofa expects."""
    import facenas.adapters.nni.trial as trial_module
    from facenas.adapters.nni.pipeline import run_pipeline_locally

    new = _config("ofa_test.yml").to_dict()
    steps = {s["name"]: s for s in new["steps"]}
    old_steps = [steps[n] for n in ("data", "lut", "supernet")]
    old_steps.append({**steps["evaluate"], "params": {**steps["evaluate"]["params"], "calibration_images": 64}})
    old_steps.append({"name": "reference", "role": "reference", "stage": "engine.train",  # the file's earlier shape
                      "params": steps["equal_budget"]["params"] | {"config": {**steps["equal_budget"]["params"]["config"],
                                                                                   "num_epoch": 1}}})
    old = {**new, "steps": old_steps}

    real_run_trial = trial_module.run_trial
    ran: list[tuple[str, int]] = []

    class Stopped(Exception):
        pass

    def stop_at_reference(spec, *args, **kwargs):
        if spec.step == "reference":
            raise Stopped  # the run stops (killed) as the old file's reference training would start
        ran.append((spec.step, spec.index))
        return real_run_trial(spec, *args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", stop_at_reference)
    out = tmp_path / "run"
    with pytest.raises(Stopped):
        run_pipeline_locally(old, out)
    assert list(dict.fromkeys(s for s, _ in ran)) == ["data", "lut", "supernet", "evaluate"]
    kept = {name: (out / name / "000" / "result.json").stat().st_mtime_ns for name in ("data", "lut", "supernet")}

    ran.clear()

    def record(spec, *args, **kwargs):
        ran.append((spec.step, spec.index))
        return real_run_trial(spec, *args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", record)
    with caplog.at_level(logging.INFO, logger="facenas.adapters.nni.pipeline"):
        sched = run_pipeline_locally(new, out)
    assert sched.status() == "finished", sched.status()
    for name in ("data", "lut", "supernet"):
        assert f"step '{name}' unchanged: kept (done, 1 finished trial(s))" in caplog.text
        assert (out / name / "000" / "result.json").stat().st_mtime_ns == kept[name]  # not run again
    assert "step 'evaluate' runs again: its params changed since the saved run" in caplog.text
    assert (out / "replaced" / "evaluate.1" / "000" / "result.json").is_file()
    assert not {"data", "lut", "supernet"} & {s for s, _ in ran}
    assert list(dict.fromkeys(s for s, _ in ran)) == [
        "evaluate", "reference_latency", "search", "final", "finetune_mbf_x05", "finetune_mbf_x025", "equal_budget",
        "side_by_side"]
    assert {i for s, i in ran if s == "finetune_mbf_x05"} == {0, 1}  # one trial per fine-tuning seed

    # the record as benchmarks/collect_pipeline writes it, read by bench_ofa
    from benchmarks.bench_ofa import summarise
    from benchmarks.collect_pipeline import collect

    s = summarise(collect(out), results=None, metric="val_acc")  # the toy's accuracy: its val.bin
    picks = s["runtimes"]["onnxruntime"]["finetuned"]
    assert sorted((p["reference"], p["seeds"]) for p in picks) == [("mbf_x025", [2048, 1]), ("mbf_x05", [2048, 1])]
    for p in picks:
        assert len(p["val_acc"]["values"]) == 2 and p["val_acc"]["std"] is not None
        assert p["latency_ms"]["onnxruntime"] > 0 and p["vs_reference"]["reference"] == p["reference"]
    assert s["references"]["mbf_x05"]["latency_ms"]["onnxruntime"] > 0
    eq = s["equal_budget"]
    assert eq["epochs"] == 4 == eq["supernet_epochs"] + 1 and eq["latency_ms"]["onnxruntime"] > 0

    # run-local -> collect_pipeline -> the headline: each fine-tuned pick one network over its two fine-tuning seeds
    # (a foreach in a run of seed 0), timed by side_by_side, against the run's equal-budget reference
    import dataclasses

    from benchmarks.collect_pipeline import main as collect_main
    from benchmarks.seed_rows import ROW_SOURCES, gather_rows, networks
    from benchmarks.summary import section_headline

    results = tmp_path / "results"  # not benchmarks/results: the toy record must not stand in for the CPU-scale one
    assert collect_main([str(out), "--name", "ofa_cpu", "--experiment", "recipes/nni/ofa_test.yml",
                         "--results", str(results)]) == 0
    picks = {"finetune_mbf_x05": "onnxruntime", "finetune_mbf_x025": "onnxruntime"}  # ofa_test.yml: one runtime
    source = dataclasses.replace(next(s for s in ROW_SOURCES if s.record == "ofa_cpu"), steps=(*picks, "equal_budget"),
                                 target_runtime=picks, metric="val_acc", compare_with=())
    nets = {n.name: n for n in networks(gather_rows(results, (source,)))}
    assert set(nets) == {"finetune_mbf_x05", "finetune_mbf_x025", "equal_budget (4 epochs)"}
    for name in picks:
        assert nets[name].seeds == [2048, 1] and nets[name].role == "searched" and nets[name].accuracy.std is not None
        assert nets[name].latency_ms["onnxruntime"] > 0 and nets[name].rows[0].budget.startswith("4 epochs: 3 supernet")
    assert nets["equal_budget (4 epochs)"].seeds == [2048] and nets["equal_budget (4 epochs)"].role == "reference"
    ort = section_headline(results, (source,)).split("### onnxruntime")[1].split("### TFLite")[0]
    for name in picks:
        row = next(line for line in ort.splitlines() if line.startswith(f"| ofa: {name} | onnxruntime |"))
        assert row.split(" | ")[3] == "2"  # two seeds
        assert "equal_budget (4 epochs)" in row or "no reference is as slow" in row
