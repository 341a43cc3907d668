"""benchmarks/summary.py renders tables and the Pareto plot from recorded JSON only; missing results say so."""
from __future__ import annotations

import json

import pytest

from benchmarks.summary import render
from facenas.utils.plot import pareto_front


def test_pareto_front_keeps_only_non_dominated_points():
    pts = [(1.0, 0.80), (2.0, 0.85), (1.5, 0.79), (3.0, 0.85), (0.5, 0.70), (2.5, 0.90)]
    assert pareto_front(pts) == [4, 0, 1, 5]  # (1.5, .79) dominated by (1, .80); (3, .85) by (2, .85)


def _write(results, name, result):
    (results / f"{name}.json").write_text(json.dumps({"benchmark": name, "date": "2026-01-01", "command": "x",
                                                      "result": result}))


def test_summary_renders_recorded_results_and_marks_missing_ones(tmp_path):
    _write(tmp_path, "bench_recordio", {"speedup_vs_mxnet": 5.1, "cpu_time_ratio_vs_mxnet": 4.9,
                                        "facenas_vs_image_files": 1.1, "goal_speedup_vs_mxnet": 5.0})
    _write(tmp_path, "bench_baselines", {"runs": {"mbf": {
        "network": "mbf", "network_kwargs": {"width_mult": 0.5}, "lfw_acc": 0.85, "lfw_acc_std": 0.01, "mflops": 60.0,
        "params_m": 0.5, "train_minutes": 30.0, "epochs": 20, "config": {"threads": 1},
        "artifacts": "/a/celeba299_mbf_cpu"}}})
    _write(tmp_path, "bench_deploy", {"threads": 1, "models": [
        {"model": "/a/celeba299_mbf_cpu/best.pt", "mflops": 60.0, "latency": {"onnxruntime": {"median_ms": 2.0},
                                                                             "tflite_float32": {"median_ms": 3.0}},
         "torch": {"lfw_acc": 0.85}}]})
    out = render(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "| RecordIO read + decode" in md and "5.1000" in md and "ratio (x)" in md
    assert "0.8500 ± 0.0100" in md and "| 2.0000 |" in md  # latency joined from bench_deploy by checkpoint path
    assert "_missing: `benchmarks/results/bench_lut.json` has not been recorded" in md
    assert "_missing: `benchmarks/results/ofa_cpu.json`" in md
    assert out["points"] == 1 and (tmp_path / "summary.png").is_file() and out["pareto"]


def test_summary_without_any_results_writes_only_missing_sections(tmp_path):
    out = render(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert out["points"] == 0 and "no network has both" in md and not (tmp_path / "summary.png").exists()


def _trial(step, stage, index=0, role="candidate", params=None, metrics=None, arch=None):
    return {"step": step, "index": index, "stage": stage, "role": role, "status": "SUCCEEDED", "params": params or {},
            "arch": arch, "metrics": metrics or {}}


def _reference_front(results, steps):
    """A reference_front_cpu record: per step an engine.train trial and the runtime.latency trial timing it."""
    trials = []
    for step, (acc, ort, tfl) in steps.items():
        trials.append({"step": step, "stage": "engine.train", "status": "SUCCEEDED", "params": {"seed": 1},
                       "metrics": {"lfw_acc": acc, "lfw_acc_std": 0.01, "epochs": 20.0}})
        trials.append({"step": f"{step}_latency", "stage": "runtime.latency", "status": "SUCCEEDED",
                       "params": {"model": f"$RUN_DIR/{step}/000/train/last.pt"},
                       "metrics": {"latency_ms": {"onnxruntime": ort, "tflite": tfl}, "latency_onnxruntime_ms": ort,
                                   "latency_tflite_ms": tfl}})
    _write(results, "reference_front_cpu", {"trials": trials, "pending_steps": ["later"]})


def test_fronts_plot_puts_a_published_network_at_its_mean_over_seeds(tmp_path):
    """The plot's searched points are compared with the references' means over seeds, so they are drawn at their own
    mean and median latency over seeds (the manifest's ``seeds``), not at the one published seed's numbers."""
    from benchmarks.summary import _front_points

    _reference_front(tmp_path, {"small": (0.80, 0.5, 0.6)})
    (tmp_path / "models").mkdir()
    entry = {"role": "searched", "lfw_acc": 0.86, "latency_ms": {"onnxruntime": 1.0, "tflite": 0.9}}
    (tmp_path / "models" / "manifest.json").write_text(json.dumps({"models": [
        {**entry, "file": "seeded.onnx", "seeds": {"n": 3, "mean": 0.84, "latency_ms_median": {"onnxruntime": 1.1,
                                                                                           "tflite": None}}},
        {**entry, "file": "single.onnx"}]}))
    points = {p["label"]: p for p in _front_points(tmp_path)}
    assert (points["seeded"]["accuracy"], points["seeded"]["latency_ms"]) == (0.84, {"onnxruntime": 1.1})
    assert (points["single"]["accuracy"], points["single"]["latency_ms"]) == (0.86, entry["latency_ms"])
    assert points["small"]["group"] == "hand-designed reference"


def test_fronts_plot_and_published_section_come_from_the_records(tmp_path):
    _reference_front(tmp_path, {"small": (0.80, 0.5, 0.6), "big": (0.85, 1.5, 1.2)})
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "manifest.json").write_text(json.dumps({"models": [
        {"file": "s.onnx", "network": "S", "method": "ofa", "role": "searched", "target_runtime": "tflite", "seed": 1,
         "lfw_acc": 0.86, "lfw_acc_std": 0.01, "latency_ms": {"onnxruntime": 1.0, "tflite": 0.9}, "mflops": 9.0,
         "params_m": 0.1, "compare_with": "big.onnx", "budget": "20 epochs", "sha256": "ab" * 32, "embedding_size": 128}]}))
    out = render(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary_fronts.png").is_file() and out["summary_fronts_png"]
    # a record written before seeds were kept: one run, its seed from the trials; one seed gives no std
    assert "| small | engine.train | 0.8000 | 1 | 1: 0.8000 | 1: 0.5000 / 0.6000 | 0.5000 | 0.6000 |" in md
    assert "Networks not trained yet: seed 1: later." in md
    assert "[s.onnx](models/s.onnx) | S | ofa | searched | tflite | 0.8600 ± 0.0100 | 1.0000 | 0.9000 |" in md
    assert "![LFW accuracy vs latency per runtime" in md and "Searched networks published: 1." in md


def test_readme_blocks_are_regenerated_between_their_markers(tmp_path):
    from benchmarks.summary import update_readme
    from facenas.errors import ConfigError

    _reference_front(tmp_path, {"small": (0.80, 0.5, 0.6)})
    text = "# t\n\nhand-written\n\n<!-- summary:reference_front -->\nold table\n<!-- /summary:reference_front -->\n\nmore\n"
    new = update_readme(text, tmp_path)
    assert "old table" not in new and "| small |" in new and new.startswith("# t\n\nhand-written\n")
    assert new.endswith("<!-- /summary:reference_front -->\n\nmore\n") and "benchmarks/results/summary_fronts.png" in new
    assert update_readme(new, tmp_path) == new  # idempotent
    with pytest.raises(ConfigError, match="unknown generated block <!-- summary:nope -->"):
        update_readme("<!-- summary:nope -->\n<!-- /summary:nope -->\n", tmp_path)
    with pytest.raises(ConfigError, match="needs one <!-- summary:lut --> line"):
        update_readme("<!-- summary:lut -->\nno end\n", tmp_path)


def test_readme_generated_blocks_match_the_recorded_results():
    """README.md's generated blocks are what `python -m benchmarks.summary --readme` makes of benchmarks/results."""
    from benchmarks.summary import README, RESULTS, update_readme

    text = README.read_text(encoding="utf-8")
    assert "<!-- summary:report -->" in text and "<!-- summary:published -->" in text
    assert update_readme(text, RESULTS) == text, "README.md is stale: run `python -m benchmarks.summary --readme`"
