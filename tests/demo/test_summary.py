"""benchmarks/summary.py renders tables and the Pareto plot from recorded JSON only; missing results say so."""
from __future__ import annotations

import json

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
    assert "_missing: `benchmarks/results/bench_ofa.json`" in md
    assert out["points"] == 1 and (tmp_path / "summary.png").is_file() and out["pareto"]


def test_summary_without_any_results_writes_only_missing_sections(tmp_path):
    out = render(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert out["points"] == 0 and "no network has both" in md and not (tmp_path / "summary.png").exists()
