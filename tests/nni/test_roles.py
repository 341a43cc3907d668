"""What `default` means per pipeline step: roles, the dict NNI receives, results, printed commands."""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest

from facenas.adapters.nni.envelope import from_parameters
from facenas.adapters.nni.pipeline import PipelineConfig, PipelineScheduler, run_pipeline_locally
from facenas.adapters.nni.reporter import portal_metrics
from facenas.adapters.nni.results import best_architectures, default_columns, format_summary, summarize
from facenas.errors import ConfigError
from facenas.nas.space import create_space


def test_only_a_candidate_reports_its_default_to_the_portal():
    metrics = {"default": 0.9, "val_acc": 0.9, "latency_ms": 1.5, "output": "/x", "within_tolerance": True}
    cand = portal_metrics(metrics, "student", "candidate")
    assert cand == {"default": 0.9, "val_acc": 0.9, "latency_ms": 1.5, "step": "student", "role": "candidate"}
    for role in ("reference", "auxiliary"):
        other = portal_metrics(metrics, "uniform", role)
        assert math.isnan(other["default"]) and other["objective"] == 0.9 and other["role"] == role
        assert other["step"] == "uniform" and other["val_acc"] == 0.9
    # outside a pipeline (NasExperiment's engine): numbers only, nothing added
    assert portal_metrics(metrics) == {"default": 0.9, "val_acc": 0.9, "latency_ms": 1.5}


def test_step_roles_default_by_stage_travel_to_the_trial_and_the_pipeline_keeps_the_stage_default(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "data", "stage": "data.synthetic"},                         # auxiliary by its stage
        {"name": "supernet", "stage": "toy.train_supernet"},                 # auxiliary by its stage
        {"name": "teacher", "stage": "toy.evaluate", "role": "reference"},   # told
        {"name": "retrain", "stage": "toy.evaluate"},                        # candidate by default
    ]})
    sched = PipelineScheduler(cfg, tmp_path)
    assert sched.roles == {"data": "auxiliary", "supernet": "auxiliary", "teacher": "reference", "retrain": "candidate"}
    pid, spec = sched.next_trial()
    assert spec.role == "auxiliary" and from_parameters(spec.to_parameters()).role == "auxiliary"
    # NNI hands the advisor what the trial reported: NaN default, the stage's own as objective
    sched.on_final(pid, portal_metrics({"default": 400.0, "images": 400.0}, "data", "auxiliary"))
    assert sched.units[pid].metrics["default"] == 400.0 and "objective" not in sched.units[pid].metrics
    with pytest.raises(ConfigError, match="role 'best' is not one of"):
        PipelineConfig.from_dict({"steps": [{"name": "a", "stage": "toy.evaluate", "role": "best"}]})


def _toy_with_reference():
    return {"name": "roles", "steps": [
        {"name": "supernet", "stage": "toy.train_supernet", "params": {"epochs": 1}},
        {"name": "retrain", "stage": "toy.evaluate", "space": "toy", "params": {"sample": create_space("toy").smallest(),
                                                                               "epochs": 1}},
        # the reference is the better network (largest) and comes last: it must still not be "best"
        {"name": "baseline", "stage": "toy.evaluate", "space": "toy", "role": "reference",
         "params": {"sample": create_space("toy").largest(), "epochs": 1}},
    ]}


def test_best_architectures_come_from_the_last_candidate_step_not_a_reference(tmp_path):
    run_pipeline_locally(_toy_with_reference(), tmp_path / "run")
    summary = summarize(tmp_path / "run")
    rows = {r["step"]: r for r in summary["trials"]}
    assert rows["baseline"]["default"] > rows["retrain"]["default"]  # the reference scores higher ...
    assert summary["best_architectures_step"] == "retrain"            # ... and is not the answer
    assert summary["best_architectures"][0]["arch"]["sample"] == create_space("toy").smallest()
    saved = json.loads((tmp_path / "run" / "best_architectures.json").read_text())
    assert saved["step"] == "retrain" and saved["ranking"][0]["role"] == "candidate"
    assert [r["role"] for r in summary["trials"]] == ["auxiliary", "candidate", "reference"]
    # records without a role (older experiments) count as candidates
    records = [{"status": "SUCCEEDED", "step": "s", "arch": {"sample": {}}, "metrics": {"default": 1.0}}]
    assert best_architectures(records, ["s"])["step"] == "s"


def test_results_text_has_one_count_per_step_and_chosen_columns(tmp_path, capsys):
    from facenas.cli import main as facenas_main

    run_pipeline_locally(_toy_with_reference(), tmp_path / "run")
    summary = summarize(tmp_path / "run")
    text = format_summary(summary)
    step_lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(step_lines) == 3 and all(line.count("succeeded") == 1 for line in step_lines), step_lines
    assert default_columns(summary)[:1] == ["toy_score"]  # what `default` is, first
    capsys.readouterr()
    assert facenas_main(["nni", "results", str(tmp_path / "run"), "--columns", "params_m,mflops"]) == 0
    head = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| step"))
    assert head.split(" | ")[6:8] == ["params_m", "mflops"] and "toy_score" not in head
    assert facenas_main(["nni", "results", str(tmp_path / "run"), "--columns", "lfw_acc"]) == 2
    err = capsys.readouterr().err
    assert "--columns: no trial reports ['lfw_acc']" in err and "toy_score" in err and "Traceback" not in err


def test_view_prints_the_stop_command_with_the_environment_it_needs(monkeypatch, capsys, tmp_path):
    from facenas.adapters.nni import launch
    from facenas.cli import main as facenas_main

    home, config = tmp_path / "demo" / "nni-home", tmp_path / "demo" / "nni config"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NNI_CONFIG_DIR", str(config))
    seen = {}

    def fake_view(experiment_id, port, env):
        seen.update(env)
        return f"http://127.0.0.1:{port}"

    monkeypatch.setattr(launch, "view", fake_view)
    assert facenas_main(["nni", "view", "abc123", "--port", "19250"]) == 0
    out = capsys.readouterr().out
    command = out.split("stop with: ")[1].strip()
    words = shlex.split(command)
    assert words[-4:] == ["facenas", "nni", "stop", "abc123"]
    assert dict(w.split("=", 1) for w in words[:-4]) == {"HOME": str(home.resolve()),
                                                         "NNI_CONFIG_DIR": str(config.resolve())}
    assert seen["HOME"] == str(home)  # the command's env is the one view itself ran with
