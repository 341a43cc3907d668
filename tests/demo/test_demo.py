"""`facenas demo`: argument handling and bad input (fast); the whole main job end to end (slow)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from facenas.cli import main
from facenas.recipes.demo import SCALES, experiment_config


@pytest.mark.parametrize("argv, message", [
    (["--rec", "/nonexistent/rec"], "--rec /nonexistent/rec: no such folder"),
    (["--val", "x.bin"], "--val needs --rec"),
])
def test_bad_arguments_fail_with_one_message(tmp_path, capsys, argv, message):
    code = main(["demo", "--work", str(tmp_path / "w"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_real_data_needs_a_val_set_that_exists(tmp_path, capsys):
    rec = tmp_path / "rec"
    rec.mkdir()
    assert main(["demo", "--work", str(tmp_path / "w"), "--rec", str(rec)]) == 2
    assert "at least one --val" in capsys.readouterr().err
    assert main(["demo", "--work", str(tmp_path / "w"), "--rec", str(rec), "--val", str(tmp_path / "no.bin")]) == 2
    assert "no.bin: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_experiment_config_is_a_valid_facenas_pipeline(tmp_path, scale):
    """The generated experiment passes the launcher's own validation (stage names, references, space)."""
    import yaml

    from facenas.adapters.nni.launch import prepare_config

    cfg = experiment_config("/data/rec", ["/data/lfw.bin", "/data/cfp_fp.bin"], scale, threads=1)
    path = tmp_path / "exp.yml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    resolved, warnings = prepare_config(path)
    steps = resolved["tuner"]["classArgs"]["steps"]
    assert [s["name"] for s in steps] == ["teacher", "search", "student", "uniform"]
    assert steps[2]["params"]["arch"] == "${search.result.arch_path}" and resolved["searchSpace"]
    # the portal's best trial is the searched student, never the teacher or the uniform comparison network
    assert [s["role"] for s in steps] == ["reference", "auxiliary", "candidate", "reference"]
    assert steps[2]["params"]["sample"] == "${search.arch.sample}"  # the found choices as portal columns
    assert steps[2]["params"]["config"]["test_targets"] == ["/data/lfw.bin", "/data/cfp_fp.bin"]
    assert not [w for w in warnings if "trialCommand" in w]


@pytest.mark.slow
def test_demo_end_to_end_on_synthetic_identities(tmp_path):
    """The README's main job at its default: NNI experiment on loopback, summary JSON, ONNX, plot; rerun reuses it."""
    work = tmp_path / "demo"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "facenas.cli", "demo", "--work", str(work), "--json"],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NNI web portal: http://127.0.0.1:" in proc.stdout
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["accuracy"] > 0.8  # synthetic open-set val.bin, far above chance (0.5)
    assert res["latency_ms_onnxruntime_1thread"] > 0 and res["mflops"] > 0 and res["params_m"] > 0
    assert (work / "student.onnx").is_file() and (work / "accuracy_latency.png").is_file()
    assert set(res["networks"]) == {"teacher", "student", "uniform"} and res["found_architecture"]
    assert isinstance(res["search"]["within_tolerance"], bool)  # from the search trial's record, not null
    assert res["view_command"].startswith("HOME=") and " NNI_CONFIG_DIR=" in res["view_command"]
    first = time.time() - t0
    proc = subprocess.run([sys.executable, "-m", "facenas.cli", "demo", "--work", str(work), "--json"],
                          capture_output=True, text=True, timeout=600)
    again = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and again["experiment_id"] == res["experiment_id"]  # finished experiment reused
    assert time.time() - t0 - first < first
