"""recipes/nni/reference_front_cpu.yml at test scale, and `facenas nni run-local` resuming a stopped run."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

import facenas.adapters.nni.trial as trial_mod
from facenas.adapters.nni.launch import load_yaml
from facenas.adapters.nni.pipeline import PipelineConfig, pipeline_config_of, run_pipeline_locally

REPO = Path(__file__).resolve().parents[2]
FRONT = REPO / "recipes" / "nni" / "reference_front_cpu.yml"
TOY_TEST = REPO / "recipes" / "nni" / "toy_test.yml"
REAL_RUN_TRIAL = trial_mod.run_trial

#: what makes each engine.train step a seconds-long run on synthetic identities
TINY_TRAIN = {"rec": "synthetic", "num_classes": 64, "num_image": 1024, "image_size": 32, "num_epoch": 1,
              "warmup_epoch": 0, "batch_size": 64, "val_targets": [], "test_targets": [], "num_workers": 0,
              "device": "cpu", "frequent": 100}
TINY_LATENCY = {"rounds": 1, "runs": 3, "min_time_s": 0.0}


def tiny_front(only: list[str] | None = None) -> PipelineConfig:
    """The experiment file's pipeline with every step shrunk (and only the named networks)."""
    cfg = pipeline_config_of(load_yaml(FRONT)["tuner"]).to_dict()
    steps = []
    for step in copy.deepcopy(cfg["steps"]):
        network = step["name"].removesuffix("_latency")
        if only is not None and network not in only:
            continue
        step["params"].update(TINY_TRAIN if step["stage"] == "engine.train" else TINY_LATENCY)
        steps.append(step)
    cfg["steps"] = steps
    return PipelineConfig.from_dict(cfg, source="tiny reference front")


def test_reference_front_file_trains_the_five_networks_then_times_each_in_both_runtimes(monkeypatch):
    cfg = pipeline_config_of(load_yaml(FRONT)["tuner"])
    steps = cfg.step_configs()
    trains = [s for s in steps if s.stage == "engine.train"]
    assert [s.name for s in trains][:3] == ["mbf_x025", "mbf_x05_relu", "mbf_x075"]  # most useful first
    assert {s.name for s in trains} == {"mbf_x025", "mbf_x05_relu", "mbf_x075", "airface", "r18_x025", "mbf_x05"}
    for step in trains:
        assert step.params["threads"] == 1 and step.params["seed"] == "${seed}"
        latency = steps[steps.index(step) + 1]
        assert latency.stage == "runtime.latency"
        assert latency.params["model"] == f"${{{step.name}.result.output}}/last.pt"
    assert cfg.seed == 2048  # the recorded baseline's seed
    monkeypatch.setenv("FACENAS_VAR_SEED", "1")  # another seed, as the file's header says
    assert pipeline_config_of(load_yaml(FRONT)["tuner"]).seed == 1
    relu = next(s for s in trains if s.name == "mbf_x05_relu")
    assert relu.params["network_kwargs"] == {"width_mult": 0.5, "act": "relu"}


@pytest.mark.slow
def test_reference_front_runs_at_test_scale_and_reports_both_runtimes(tmp_path):
    sched = run_pipeline_locally(tiny_front(), tmp_path)
    assert sched.status() == "finished"
    for network in ("mbf_x025", "mbf_x05_relu", "mbf_x075", "airface", "r18_x025", "mbf_x05"):
        (lat,) = sched.records(f"{network}_latency")
        m = lat["metrics"]
        assert set(m["latency_ms"]) == {"onnxruntime", "tflite"}, network
        assert m["latency_onnxruntime_ms"] > 0 and m["latency_tflite_ms"] > 0 and m["threads"] == 1
        assert m["input_size"] == [32, 32]
    relu = sched.records("mbf_x05_relu_latency")[0]["metrics"]
    prelu = sched.records("mbf_x05_latency")[0]["metrics"]
    assert relu["passes"]["onnxruntime"] == prelu["passes"]["onnxruntime"]  # each runtime's best export
    assert relu["mflops"] == pytest.approx(prelu["mflops"])  # same network, another activation


def _count_trials(monkeypatch, stop_at: int | None = None) -> list[str]:
    """Record every trial run_pipeline_locally starts; the ``stop_at``-th raises KeyboardInterrupt."""
    real, calls = REAL_RUN_TRIAL, []

    def run_trial(spec, out_dir, nni_info=None):
        calls.append(str(out_dir))
        if stop_at is not None and len(calls) == stop_at:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "partial").write_text("left by the stopped run")
            raise KeyboardInterrupt
        return real(spec, out_dir, nni_info)

    monkeypatch.setattr(trial_mod, "run_trial", run_trial)
    return calls


def test_run_local_resumes_a_stopped_run_without_rerunning_finished_trials(tmp_path, monkeypatch):
    pipeline = pipeline_config_of(load_yaml(TOY_TEST)["tuner"])
    first = _count_trials(monkeypatch, stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline_locally(pipeline, tmp_path)
    assert len(first) == 4 and (tmp_path / "advisor_state.json").is_file()
    second = _count_trials(monkeypatch)
    sched = run_pipeline_locally(pipeline, tmp_path)
    assert sched.status() == "finished (1 failed trial(s))"  # as an uninterrupted run (toy_test injects one)
    assert second[0] == first[3]  # the interrupted trial runs again first, in its own folder
    assert not set(second[1:]) & set(first[:3])  # finished trials are not run again
    assert (Path(first[3]) / "partial").is_file()
    fresh = tmp_path / "fresh"
    _count_trials(monkeypatch)
    ref = run_pipeline_locally(pipeline, fresh)
    assert len(first) - 1 + len(second) == sum(1 for u in ref.units.values())
    done = sorted((u.step, u.index) for u in sched.units.values() if u.status == "succeeded")
    assert done == sorted((u.step, u.index) for u in ref.units.values() if u.status == "succeeded")


def test_run_local_refuses_another_pipelines_state(tmp_path):
    from facenas.errors import FacenasError

    run_pipeline_locally(pipeline_config_of(load_yaml(TOY_TEST)["tuner"]), tmp_path)
    other = pipeline_config_of(load_yaml(TOY_TEST)["tuner"]).to_dict() | {"name": "another"}
    with pytest.raises(FacenasError, match="belongs to pipeline 'toy_test'"):
        run_pipeline_locally(PipelineConfig.from_dict(other), tmp_path)


def test_run_local_refuses_another_seeds_state(tmp_path):
    """Another seed into a used folder would silently report the first seed's networks: refused."""
    from facenas.errors import FacenasError

    base = pipeline_config_of(load_yaml(TOY_TEST)["tuner"])
    run_pipeline_locally(base, tmp_path)
    other = base.to_dict() | {"seed": int(base.seed) + 1}
    with pytest.raises(FacenasError, match=rf"seed {base.seed}, not {int(base.seed) + 1}"):
        run_pipeline_locally(PipelineConfig.from_dict(other), tmp_path)
