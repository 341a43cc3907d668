"""The trial entry point: parameters in, stage run with an NNI reporter, files out, exit status."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from facenas.adapters.nni.reporter import nni_metric_dict
from facenas.adapters.nni.trial import jsonable, main

BEST = {"stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "dwconv"}


def _params(**envelope):
    return json.dumps({"facenas": {"stage": "toy.evaluate", "params": {"epochs": 3}, "space": "toy", **envelope}, **BEST})


def test_trial_runs_the_stage_and_writes_its_record(tmp_path):
    assert main(["--parameters", _params(), "--output", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "result.json").read_text())
    assert rec["status"] == "SUCCEEDED" and rec["stage"] == "toy.evaluate"
    assert rec["params"]["sample"] == BEST and rec["metrics"]["default"] == 1.0
    assert {"toy_score", "mflops", "params_m"} <= set(rec["metrics"])
    assert rec["arch"] == {"format": "facenas.arch/1", "space": "toy", "space_config": {"embedding_size": 32, "input_size": 32},
                           "sample": BEST}
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["intermediate"] * 3 + ["final"] and rec["intermediates"] == 3
    assert json.loads((tmp_path / "params.json").read_text())["nni"] == {"standalone": True}


def test_a_failing_stage_is_recorded_and_exits_1(tmp_path):
    out = tmp_path / "t"
    code = main(["--parameters", _params(params={"fail_if": BEST}), "--output", str(out)])
    assert code == 1
    rec = json.loads((out / "result.json").read_text())
    assert rec["status"] == "FAILED" and "injected failure" in rec["error"] and "Traceback" in rec["traceback"]


def test_parameters_without_envelope_need_a_stage(tmp_path, capsys):
    assert main(["--parameters", json.dumps(BEST), "--output", str(tmp_path)]) == 2
    assert "--stage" in capsys.readouterr().err
    assert main(["--parameters", json.dumps(BEST), "--stage", "toy.evaluate", "--space", "toy",
                 "--params", '{"epochs": 1}', "--output", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "result.json").read_text())["arch"]["sample"] == BEST


def test_trial_module_runs_as_a_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "facenas.adapters.nni.trial", "--parameters", _params(),
                           "--output", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "SUCCEEDED"


def test_nni_gets_numbers_only():
    m = nni_metric_dict({"lfw_acc": 0.9, "default": 0.9, "output": "/x", "ok": True, "bad": math.nan, "n": 3})
    assert list(m) == ["default", "lfw_acc", "n"] and m["n"] == 3.0
    assert jsonable({"a": math.inf, "b": object.__new__(object).__class__}) == {"a": None, "b": "<class 'object'>"}


@pytest.mark.parametrize("bad", ["{not json", "@/does/not/exist.json"])
def test_bad_parameter_arguments_are_user_errors(tmp_path, bad, capsys):
    assert main(["--parameters", bad, "--output", str(tmp_path)]) == 2
    assert "--parameters" in capsys.readouterr().err
