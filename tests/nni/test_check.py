"""``facenas nni check``: every shipped experiment file passes; broken copies fail with one clear line each;
``classArgs.variables`` substitution (and its environment overrides)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from facenas.adapters.nni.check import check_experiment_file
from facenas.adapters.nni.variables import substitute_variables
from facenas.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "recipes" / "nni").glob("*.yml"))


def test_every_file_passes_and_the_gpu_files_are_there():
    names = {f.name for f in FILES}
    assert {"enas_gpu.yml", "tnas_gpu.yml", "ofa_gpu.yml"} <= names
    for path in FILES:
        report = check_experiment_file(path)
        assert report.ok, report.problems
    gpu = yaml.safe_load((REPO / "recipes/nni/ofa_gpu.yml").read_text())
    assert gpu["trialGpuNumber"] == 1 and gpu["trainingService"]["useActiveGpu"] is False
    steps = substitute_variables(gpu["tuner"]["classArgs"])["steps"]
    assert steps[0]["params"]["nproc_per_node"] == 1 and steps[0]["params"]["config"]["device"] == "cuda"


def _broken(tmp_path: Path, name: str, change) -> Path:
    data = yaml.safe_load((REPO / "recipes" / "nni" / name).read_text())
    data["trialCodeDirectory"] = str(REPO)
    if "searchSpaceFile" in data:
        data["searchSpaceFile"] = str(REPO / "recipes" / "nni" / data["searchSpaceFile"])
    data = copy.deepcopy(data)
    change(data)
    path = tmp_path / f"broken_{name}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _steps(data):
    return data["tuner"]["classArgs"]["steps"]


def _step(data, name):
    return next(s for s in _steps(data) if s["name"] == name)


def _reward(data):
    return _step(data, "search")["params"]["config"]["reward"]


def _set(obj, keys, value):
    for key in keys[:-1]:
        obj = obj[key]
    obj[keys[-1]] = value


CASES = {
    "unknown_stage": ("tnas_gpu.yml", lambda d: _steps(d)[0].update(stage="engine.trian"),
                      ["step 0 'teacher' stage", "unknown stage 'engine.trian'", "'engine.train'"]),
    "later_step": ("tnas_gpu.yml", lambda d: _set(_steps(d)[1], ["params", "config", "teacher"],
                                                  "${student.result.output}/best.pt"),
                   ["step 'search' params", "refers to step 'student', which does not run before it"]),
    "unknown_step": ("tnas_test.yml", lambda d: _set(_steps(d)[1], ["params", "teacher"], "${teachr.result.output}/best.pt"),
                     ["names no step 'teachr'", "did you mean 'teacher'"]),
    "item_outside_foreach": ("ofa_test.yml", lambda d: _set(_step(d, "evaluate"), ["params", "supernet"], "${item.sample}"),
                             ["step 'evaluate' params", "only in a step with 'foreach'"]),
    "missing_recipe": ("tnas_gpu.yml", lambda d: _set(_steps(d)[0], ["params", "config"], "recipes/configs/nope_gpu.py"),
                       ["params.config", "'recipes/configs/nope_gpu.py' does not exist"]),
    "bad_config_field": ("ofa_gpu.yml", lambda d: _set(_steps(d)[0], ["params", "config", "batch_sise"], 64),
                         ["step 0 'supernet' params", "ofa.train_supernet config does not load", "batch_sise"]),
    "bad_train_value": ("tnas_gpu.yml", lambda d: _set(_steps(d)[0], ["params", "lr"], -1.0),
                        ["step 0 'teacher' params", "engine.train config does not load", "lr"]),
    "bad_space_config": ("ofa_test.yml", lambda d: _set(_step(d, "evaluate"), ["sample", "space_config"], {"input_sise": 64}),
                         ["'evaluate' sample.space", "space 'ofa_tiny'", "input_sise"]),
    "unknown_space": ("enas_gpu.yml", lambda d: _steps(d)[1].update(space="enass"),
                      ["step 1 'retrain' space", "'enass'"]),
    "nni_field": ("toy_test.yml", lambda d: d.update(trialConcurency=d.pop("trialConcurrency")),
                  ["trialConcurency: not a field of NNI's experiment config", "did you mean 'trialConcurrency'"]),
    "nni_schema": ("toy_test.yml", lambda d: d.update(trialConcurrency="two"),
                   ["schema: NNI's experiment config refuses it", "trial_concurrency ('two')"]),
    "platform": ("tnas_test.yml", lambda d: d["trainingService"].update(platform="lokal"),
                 ["trainingService.platform: 'lokal' is not one of", "did you mean 'local'"]),
    "tuner_name": ("toy_test.yml", lambda d: d["tuner"].update(name="FacenasPipline"),
                   ["tuner.name", "did you mean", "FacenasPipeline"]),
    "undefined_variable": ("ofa_gpu.yml", lambda d: _set(_steps(d)[1], ["params", "rec"], "${vars.dataset}"),
                           ["tuner.classArgs", "'${vars.dataset}' is not defined", "defined: ["]),
    "gpu_without_use_active_gpu": ("enas_gpu.yml", lambda d: d["trainingService"].pop("useActiveGpu"),
                                   ["schema: NNI's experiment config refuses it", "use_active_gpu"]),
    "more_processes_than_gpus": ("ofa_gpu.yml", lambda d: _set(d["tuner"]["classArgs"], ["variables", "gpus"], 4),
                                 ["step 0 'supernet' params.nproc_per_node", "4 torchrun processes",
                                  "trialGpuNumber is 1"]),
    # enas.search's reward.target_ms: a literal is validated as before, also beside a reference to the table's p20
    "enas_target_string": ("enas_test.yml", lambda d: _set(_reward(d), ["target_ms"], "fast"),
                           ["step 2 'search' params", "enas.search config does not load",
                            "field 'target_ms' = 'fast' has type str, expected float"]),
    "enas_target_negative": ("enas_test.yml", lambda d: _set(_reward(d), ["target_ms"], -0.45),
                             ["step 2 'search' params", "target_ms = -0.45 must be > 0"]),
    "enas_reference_target_bad_exponent": ("enas_test.yml", lambda d: _set(_reward(d), ["exponent"], 0.5),
                                           ["step 2 'search' params", "exponent = 0.5 must be <= 0"]),
    "enas_reference_target_without_latency": ("enas_test.yml",
                                              lambda d: _step(d, "search")["params"]["config"].pop("latency"),
                                              ["step 2 'search' params", "reward.target_ms", "needs a latency model"]),
    "nni_tuner_without_stage": ("toy_tpe_test.yml", lambda d: d.update(trialCommand="python -m facenas.adapters.nni.trial"),
                                ["trialCommand", "must name the stage"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_copies_fail_with_a_clear_line(tmp_path, case):
    name, change, expected = CASES[case]
    path = _broken(tmp_path, name, change)
    report = check_experiment_file(path)
    # a misspelt NNI field also leaves the right one missing: two lines
    assert len(report.problems) == (2 if case == "nni_field" else 1), report.problems
    if case == "nni_field":
        assert report.problems[0].endswith("trialConcurrency: missing (NNI requires it)")
    line = report.problems[-1] if case == "nni_field" else report.problems[0]
    assert line.startswith(f"{path}: ") and "\n" not in line
    for text in expected:
        assert text in line, (text, line)


def test_a_whole_reference_to_an_earlier_result_fills_a_typed_field(tmp_path):
    """A ``${STEP.result.KEY}`` where a typed config expects a float or an int (its value exists only at run time,
    where the stage validates it) passes the check, at any depth of the parameters."""
    for name in ("enas_cpu.yml", "enas_test.yml"):
        data = yaml.safe_load((REPO / "recipes" / "nni" / name).read_text())
        assert _step(data, "search")["params"]["config"]["reward"]["target_ms"] == "${lut.result.p20_ms}"
        assert check_experiment_file(REPO / "recipes" / "nni" / name).problems == []

    def references(d):
        params = _step(d, "search")["params"]
        params["epochs"] = "${lut.result.entries}"  # an int override of the recipe
        params["config"]["controller"] = {"lr": "${lut.result.p35_ms}"}  # a float two configs deep
        params["config"]["child_lr"] = "${lut.result.p75_ms}"  # a float of the search config itself

    path = _broken(tmp_path, "enas_test.yml", references)
    assert check_experiment_file(path).problems == []


def test_cli_exit_2_one_line_per_problem(tmp_path, capsys):
    from facenas.cli import main

    def two_problems(d):
        _steps(d)[0].update(stage="engine.trian")
        _set(_steps(d)[2], ["params", "config"], "recipes/configs/nope_gpu.py")

    path = _broken(tmp_path, "tnas_gpu.yml", two_problems)
    assert main(["nni", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "engine.trian" in err[0] and "nope_gpu.py" in err[1]
    assert main(["nni", "check", str(REPO / "recipes/nni/enas_gpu.yml"), str(REPO / "recipes/nni/toy_test.yml")]) == 0
    out = capsys.readouterr().out
    assert out.count("OK: ") == 2 and "retrain: enas.retrain" in out


def test_variables_substitute_whole_values_and_text_and_env_overrides():
    args = {"variables": {"data": "/d", "n": 3}, "steps": [{"name": "a", "params": {"rec": "${vars.data}",
                                                                                   "val": "${vars.data}/lfw.bin",
                                                                                   "n": "${vars.n}", "x": "${a.out}"}}]}
    out = substitute_variables(args, environ={})
    assert "variables" not in out
    assert out["steps"][0]["params"] == {"rec": "/d", "val": "/d/lfw.bin", "n": 3, "x": "${a.out}"}
    out = substitute_variables(args, environ={"FACENAS_VAR_N": "5", "FACENAS_VAR_DATA": "/other"})
    assert out["steps"][0]["params"]["n"] == 5 and out["steps"][0]["params"]["val"] == "/other/lfw.bin"
    with pytest.raises(ConfigError, match=r"'\$\{vars.nope\}' is not defined.*defined: \['data', 'n', 'shared_data'\]"):
        substitute_variables({**args, "steps": ["${vars.nope}"]}, environ={})


def test_shared_data_is_a_built_in_variable_the_file_or_environment_can_override():
    args = {"steps": [{"name": "a", "params": {"rec": "${vars.shared_data}/celeba299"}}]}
    out = substitute_variables(args, environ={"FACENAS_SHARED_DATA": "/faces"})
    assert out["steps"][0]["params"]["rec"] == "/faces/celeba299"
    out = substitute_variables(args, environ={"FACENAS_SHARED_DATA": "/faces", "FACENAS_VAR_SHARED_DATA": "/x"})
    assert out["steps"][0]["params"]["rec"] == "/x/celeba299"
    out = substitute_variables({**args, "variables": {"shared_data": "/mine"}}, environ={})
    assert out["steps"][0]["params"]["rec"] == "/mine/celeba299"


def test_nni_create_raises_the_first_problem_nni_check_lists(tmp_path):
    """One validator: ``nni check`` lists every problem, ``nni create`` (prepare_config) raises the first."""
    from facenas.adapters.nni import launch

    def two_problems(d):
        d.update(trialConcurrency=-3, maxTrialNumer=5)

    path = _broken(tmp_path, "toy_tpe_test.yml", two_problems)
    report = check_experiment_file(path)
    assert len(report.problems) == 2, report.problems
    assert "trialConcurrency: -3 is not a positive integer" in report.problems[0]
    assert "maxTrialNumer: not a field" in report.problems[1] and "did you mean 'maxTrialNumber'" in report.problems[1]
    with pytest.raises(ConfigError) as info:
        launch.prepare_config(path)
    assert str(info.value) == report.problems[0].replace(str(path), str(path.resolve()))
