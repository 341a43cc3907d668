"""recipes/nni/ofa_cpu.yml holds every step behind the README's OFA rows; ofa_test.yml runs the same stages small."""
from __future__ import annotations

from pathlib import Path

import yaml

from facenas.adapters.nni.check import check_experiment_file
from facenas.adapters.nni.pipeline import pipeline_config_of

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "nni"


def _pipeline(name: str):
    return pipeline_config_of(yaml.safe_load((RECIPES / name).read_text())["tuner"]).step_configs(name)


def test_ofa_cpu_holds_every_step_behind_the_ofa_rows():
    steps_list = _pipeline("ofa_cpu.yml")
    per_runtime = lambda rt: [(f"search_{rt}", "ofa.search"), (f"final_{rt}", "ofa.evaluate"),  # noqa: E731
                              (f"finetune_{rt}", "ofa.finetune")]
    assert [(s.name, s.stage) for s in steps_list] == [
        ("lut_onnxruntime", "runtime.lut"), ("lut_tflite", "runtime.lut"),
        ("supernet", "ofa.train_supernet"), ("evaluate", "ofa.evaluate"),
        ("reference", "engine.train"), ("reference_latency", "runtime.latency"),
        *per_runtime("onnxruntime"), *per_runtime("tflite"), ("side_by_side", "runtime.latency")]
    steps = {s.name: s for s in steps_list}
    for rt in ("onnxruntime", "tflite"):
        assert steps[f"lut_{rt}"].params["runtime"] == rt and steps[f"lut_{rt}"].params["validate"] > 0
        search = steps[f"search_{rt}"]
        # each runtime's search uses that runtime's table, under bounds in its predicted ms: the reference's
        # measured latency on that runtime and percentiles of the table's predictions
        assert search.params["cost"] == {"lut": f"${{lut_{rt}.result.table}}"}
        bounds = [item["bound"] for item in search.foreach]
        assert bounds[0] == f"${{reference_latency.result.latency_{rt}_ms}}"
        assert {f"${{lut_{rt}.result.p35_ms}}", f"${{lut_{rt}.result.p75_ms}}"} <= set(bounds)
        assert {item["ranker"] for item in search.foreach} == {"comparator", "mlp"}
        assert search.foreach[0]["ranker"] == "comparator"
        finetune = steps[f"finetune_{rt}"].params
        assert finetune["sample"] == f"${{search_{rt}[0].result.arch.sample}}"  # comparator, reference's latency
        assert finetune["config"] == steps["reference"].params["config"]  # the reference's protocol
        assert finetune["head"] == "${supernet.result.head}"
        assert "lfw.bin" in steps[f"final_{rt}"].params["val"][0]
        assert steps[f"final_{rt}"].params["latency"]["runtime"] == rt
        # the fine-tuned pick is timed with the reference, every runtime, in one step's interleaved rounds
        assert steps["side_by_side"].params["models"][f"ofa_{rt}"] == f"${{finetune_{rt}.result.output}}/last.pt"
    assert steps["side_by_side"].params["models"]["reference"] == "${reference.result.output}/last.pt"
    assert steps["side_by_side"].params["runtimes"] == steps["reference_latency"].params["runtimes"] == [
        "onnxruntime", "tflite"]
    assert check_experiment_file(RECIPES / "ofa_cpu.yml").problems == []


def test_ofa_test_runs_the_same_stages():
    cpu = {s.stage for s in _pipeline("ofa_cpu.yml")}
    test = {s.stage for s in _pipeline("ofa_test.yml")}
    assert cpu <= test, cpu - test
    assert check_experiment_file(RECIPES / "ofa_test.yml").problems == []
