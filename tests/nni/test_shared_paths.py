"""Artefact paths passed between pipeline steps: recorded as the trial's inputs, checked on the worker.

Trials on NNI's ``remote`` training service read earlier steps' outputs by absolute path; a trial on
a machine that cannot read one fails before its stage runs, with one line that names the path and
NNI's ``sharedStorage`` option. The remote end-to-end run of both paths is tests/nni/test_remote.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from facenas.adapters.nni.envelope import TrialSpec, from_parameters
from facenas.adapters.nni.launch import check_shared_output, load_yaml
from facenas.adapters.nni.paths import OUTPUT_ENV
from facenas.adapters.nni.pipeline import PipelineConfig, PipelineScheduler
from facenas.adapters.nni.trial import UnreadableInputError, check_inputs, run_trial
from facenas.errors import ConfigError
from facenas.utils.io import write_json

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "nni"


def _finish(sched: PipelineScheduler, pid: int, spec: TrialSpec, result: dict) -> None:
    write_json(Path(spec.out_dir) / "result.json", {"status": "SUCCEEDED", "metrics": {"default": 1.0},
                                                    "result": result, "params": spec.params})
    sched.on_final(pid, {"default": 1.0})
    sched.on_end(pid, True, "SUCCEEDED", f"T{pid}")


def test_references_to_earlier_artefacts_become_the_trials_inputs(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "teacher", "stage": "toy.train_supernet"},
        {"name": "student", "stage": "toy.evaluate", "params": {
            "teacher": "${teacher.result.output}/last.pt", "rec": "${teacher.result.rec}",
            "val": ["${teacher.result.val}"], "missing": "${teacher.result.output}/not_written.pt",
            "count": "${teacher.metrics.default}", "name": "run-${index}", "literal": "/etc/hostname",
            "nested": {"ckpt": "${teacher.result.output}"}}},
    ]})
    sched = PipelineScheduler(cfg, tmp_path / "out")
    pid, spec = sched.next_trial()
    assert spec.inputs is None  # the first step refers to nothing
    teacher_dir = Path(spec.out_dir)
    teacher_dir.mkdir(parents=True)
    (teacher_dir / "last.pt").write_bytes(b"x")
    (teacher_dir / "train.rec").write_bytes(b"x")
    (teacher_dir / "val.bin").write_bytes(b"x")
    _finish(sched, pid, spec, {"output": str(teacher_dir), "rec": str(teacher_dir / "train.rec"),
                               "val": str(teacher_dir / "val.bin")})
    _, student = sched.next_trial()
    # paths from references that exist where the advisor runs; not literals, numbers or outputs not yet written
    assert student.inputs == [str(teacher_dir / "last.pt"), str(teacher_dir / "train.rec"), str(teacher_dir / "val.bin"),
                              str(teacher_dir)]
    # they travel in the NNI parameters
    assert from_parameters(json.loads(json.dumps(student.to_parameters()))).inputs == student.inputs


def test_check_inputs_passes_readable_files_and_folders(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"x")
    check_inputs(TrialSpec(stage="toy.evaluate", params={}, step="s", inputs=[str(tmp_path / "a.pt"), str(tmp_path)]))


def test_check_inputs_fails_with_one_line_naming_the_path_and_shared_storage(tmp_path):
    gone = tmp_path / "teacher" / "000" / "last.pt"
    with pytest.raises(UnreadableInputError) as err:
        check_inputs(TrialSpec(stage="toy.evaluate", params={}, step="student", inputs=[str(gone)]))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(gone) in msg and "sharedStorage" in msg and "step 'student'" in msg and "--output-root" in msg


def test_trial_with_an_unreadable_input_fails_before_its_stage_runs(tmp_path):
    gone = tmp_path / "elsewhere" / "supernet.json"
    spec = TrialSpec(stage="toy.evaluate", params={"supernet": str(gone), "epochs": 1000}, step="candidates",
                     inputs=[str(gone)], out_dir=str(tmp_path / "trial"))
    t0 = time.perf_counter()
    code = run_trial(spec, spec.out_dir)
    assert code == 1 and time.perf_counter() - t0 < 5
    record = json.loads((tmp_path / "trial" / "result.json").read_text())
    assert record["status"] == "FAILED" and record["error"].startswith("UnreadableInputError:")
    assert str(gone) in record["error"] and "sharedStorage" in record["error"]
    assert not (tmp_path / "trial" / "metrics.jsonl").exists()  # the stage never reported anything


def test_remote_experiment_without_an_explicit_absolute_output_root_is_refused(tmp_path):
    """NNI remote needs the output root on an absolute path every machine sees: create says so, starts nothing."""
    tnas = load_yaml(RECIPES / "tnas_test.yml")
    remote = {**tnas, "trainingService": {"platform": "remote", "machineList": [
        {"host": "127.0.0.1", "user": "root", "sshKeyFile": str(tmp_path / "key")}]}}
    with pytest.raises(ConfigError, match="--output-root") as err:
        check_shared_output("x.yml", remote, {})
    assert "sharedStorage" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="relative"):
        check_shared_output("x.yml", remote, {OUTPUT_ENV: "rel/out"})
    assert check_shared_output("x.yml", remote, {OUTPUT_ENV: str(tmp_path)}) == str(tmp_path)
    with_dir = {**remote, "tuner": {**remote["tuner"], "classArgs": {**remote["tuner"]["classArgs"], "output_dir": "/shared/x"}}}
    assert check_shared_output("x.yml", with_dir, {}) == "/shared/x"
    assert check_shared_output("x.yml", tnas, {}) is None  # one machine: the default folder is fine
