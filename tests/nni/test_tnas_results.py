"""`facenas nni run-local recipes/nni/tnas_test.yml`: the results list the searched architectures, and the run's
collected record gives the per-target comparison of ``benchmarks.bench_tnas_table3`` / ``summary.section_tnas``
(slow, ~1.5 min)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tnas_run(tmp_path_factory):
    from facenas.cli import main as facenas_main

    out = tmp_path_factory.mktemp("tnas") / "run"
    assert facenas_main(["nni", "run-local", str(REPO / "recipes" / "nni" / "tnas_test.yml"), "--output", str(out)]) == 0
    return out


@pytest.mark.slow
def test_best_architectures_list_the_searched_architectures_with_their_metrics(tnas_run):
    best = json.loads((tnas_run / "best_architectures.json").read_text())
    searched = [json.loads(p.read_text())["sample"] for p in sorted(tnas_run.glob("search/*/search/arch.json"))]
    assert len(searched) == 2 and searched[0] != searched[1]  # one search per FLOPs target
    assert best["step"] == "student" and len(best["ranking"]) == 6  # two targets x three seeds
    for top in best["ranking"]:
        assert top["arch"]["sample"] in searched and top["role"] == "candidate"
        assert top["metrics"]["default"] == top["metrics"]["val_acc"]  # a verification accuracy, not a loss
        assert top["metrics"]["latency_ms"] > 0 and top["metrics"]["mflops"] > 0
        assert Path(top["checkpoint"]).exists()
    # the search trials' records carry the architecture too (their arch.json), but they are not candidates
    summary = json.loads((tnas_run / "summary.json").read_text())
    roles = {r["step"]: r["role"] for r in summary["trials"]}
    assert roles == {"data": "auxiliary", "teacher": "reference", "search": "auxiliary", "student": "candidate",
                     "uniform": "reference", "student_latency": "auxiliary", "uniform_latency": "auxiliary"}
    for r in summary["trials"]:
        if r["step"] in ("student", "uniform"):
            assert r["metrics"]["latency_ms"] > 0  # every trained network is timed


@pytest.mark.slow
def test_demo_summary_reads_within_tolerance_from_the_search_record(tnas_run):
    """The demo summary's search block: the flag the search's result.json holds, not null."""
    from facenas.adapters.nni.results import summarize
    from recipes.demo import _search_summary

    row = next(r for r in summarize(tnas_run)["trials"] if r["step"] == "search")
    record = json.loads((Path(row["out_dir"]) / "result.json").read_text())
    got = _search_summary(row)
    assert isinstance(record["result"]["within_tolerance"], bool)
    assert got["within_tolerance"] is record["result"]["within_tolerance"]
    assert got["target_mflops"] == record["result"]["target_mflops"] and got["mflops"] == record["result"]["mflops"]


@pytest.mark.slow
def test_collected_record_gives_the_comparison_per_target(tnas_run, tmp_path):
    """collect_pipeline -> bench_tnas_table3 -> section_tnas on the run itself: both targets, three seeds a side,
    measured latencies in both runtimes, the searches' per-epoch convergence."""
    from scipy.stats import ttest_ind

    from benchmarks._common import save_result
    from benchmarks.bench_tnas_table3 import load_record, summarise
    from benchmarks.collect_pipeline import collect
    from benchmarks.summary import section_tnas

    results = tmp_path / "results"  # not benchmarks/results: the toy record must not stand in for the CPU-scale one
    save_result("tnas_cpu", {**collect(tnas_run), "experiment_file": "recipes/nni/tnas_test.yml"}, out_dir=results,
                places={str(tnas_run.resolve()): "$RUN_DIR"})
    s = summarise(load_record(results))
    assert s["accuracy"] == "val_acc" and list(s["targets"]) == ["ratio 0.5", "ratio 0.4"]
    for key, t in s["targets"].items():
        c = t["comparison"]
        assert [r["seed"] for r in t["searched"]] == [0, 1, 2] == [r["seed"] for r in t["uniform"]]
        a, b = c["searched"]["values"], c["uniform"]["values"]
        assert len(a) == len(b) == 3 and c["welch_p"] == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
        for side in ("searched", "uniform"):
            assert set(c["latency_ms"][side]) == {"onnxruntime", "tflite"}
        search = t["search"]
        assert search["within_tolerance"] and len(search["per_epoch"]) == 3
        assert {"arch_entropy", "expected_mflops", "argmax_mflops", "argmax_final"} <= set(search["per_epoch"][0])
        assert search["per_epoch"][-1]["argmax_final"] is True
    md = section_tnas(results)
    assert "| ratio 0.5 (0.563 MFLOPs) | searched |" in md and "| ratio 0.4 (0.341 MFLOPs) | uniform |" in md

    # the headline reads the same record: per target one searched and one uniform network over the three seeds
    import dataclasses

    from benchmarks.seed_rows import ROW_SOURCES, gather_rows, networks
    from benchmarks.summary import section_headline

    source = dataclasses.replace(next(x for x in ROW_SOURCES if x.record == "tnas_cpu"), metric="val_acc")
    nets = {n.name: n for n in networks(gather_rows(results, (source,)))}
    assert set(nets) == {"student ratio 0.5", "student ratio 0.4", "uniform ratio 0.5", "uniform ratio 0.4"}
    for name, net in nets.items():
        assert net.seeds == [0, 1, 2] and all(net.latency_ms[rt] > 0 for rt in ("onnxruntime", "tflite"))
        side = "searched" if name.startswith("student") else "uniform"
        assert list(net.accuracy.values) == s["targets"][name.split(" ", 1)[1]]["comparison"][side]["values"]
    own = section_headline(results, (source,)).split("### Each method against its own reference")[1]
    for ratio in ("0.5", "0.4"):
        c = s["targets"][f"ratio {ratio}"]["comparison"]
        row = next(line for line in own.splitlines() if line.startswith(f"| tnas: student ratio {ratio} | uniform"))
        assert "| 3 (0, 1, 2) |" in row and f"| {c['verdict']} |" in row


@pytest.mark.slow
def test_published_students_are_the_primary_seeds_networks_of_the_run(tnas_run, tmp_path, caplog):
    """benchmarks.publish_models with the real rows file (published_models.yml) on the run collected as tnas_cpu:
    the TNAS rows resolve, each to the first seed's trial of its target and the latency trial that timed it, their
    statistics over the three seeds; the rows of records not collected here are left out; --refresh keeps the
    files after another collection."""
    import dataclasses
    import logging

    import onnxruntime as ort

    from benchmarks._common import save_result
    from benchmarks.collect_pipeline import collect
    from benchmarks.publish_models import ROWS_FILE, load_rows, publish, refresh
    from benchmarks.seed_rows import ROW_SOURCES

    results = tmp_path / "results"
    save_result("tnas_cpu", {**collect(tnas_run), "experiment_file": "recipes/nni/tnas_test.yml"}, out_dir=results,
                places={str(tnas_run.resolve()): "$RUN_DIR"})
    sources = (dataclasses.replace(next(x for x in ROW_SOURCES if x.record == "tnas_cpu"), metric="val_acc"),)
    rows = load_rows(ROWS_FILE)
    models = tmp_path / "models"
    with caplog.at_level(logging.INFO, logger="benchmarks.publish_models"):
        out = publish(rows, {"tnas_cpu": tnas_run}, results, models, sources=sources)
    tnas = sorted(r.file for r in rows if r.record == "tnas_cpu")
    assert out["published"] == tnas and len(tnas) == 4
    assert sorted(out["not_recorded_yet"]) == sorted(r.file for r in rows if r.record != "tnas_cpu")
    assert "mbf_x05.onnx: reference_front_cpu is not recorded yet" in caplog.text

    # what the run's own folders say: per step, the trials' (ratio, seed) and val_acc; who timed which output
    trials = {}
    for f in tnas_run.glob("*/*/result.json"):
        r = json.loads(f.read_text())
        trials[(r["step"], r["index"])] = r
    arch_ratio = {trials[("search", i)]["result"]["arch_path"]: trials[("search", i)]["params"]["target_width_ratio"]
                  for i in (0, 1)}

    def ratio(r):
        return r["params"].get("uniform_ratio") or arch_ratio[r["params"]["arch"]]

    manifest = json.loads((models / "manifest.json").read_text())["models"]
    for e in manifest:
        src, name = e["source"], e["source"]["headline_name"]
        step, want = name.split()[0], float(name.split()[-1])
        net = sorted((r for (s, _), r in trials.items() if s == step and ratio(r) == want), key=lambda r: r["index"])
        assert [r["params"]["config"]["seed"] for r in net] == [0, 1, 2] == e["seeds"]["seeds"]
        assert (src["step"], src["index"], e["seed"]) == (step, net[0]["index"], 0)  # the primary (first) seed
        assert e["seeds"]["values"] == [r["metrics"]["val_acc"] for r in net] and e["seeds"]["metric"] == "val_acc"
        timer = trials[(src["latency_step"], src["latency_index"])]
        assert timer["params"]["model"].startswith(net[0]["metrics"]["output"] + "/") and src["latency_model"] is None
        assert e["latency_ms"] == {rt: timer["metrics"][f"latency_{rt}_ms"] for rt in ("onnxruntime", "tflite")}
        assert e["mflops"] == pytest.approx(net[0]["metrics"]["mflops"])
        sess = ort.InferenceSession(str(models / e["file"]), providers=["CPUExecutionProvider"])
        assert sess.get_inputs()[0].shape[-2:] == [112, 112]
    assert {e["file"]: e["compare_with"] for e in manifest if e["role"] == "searched"} == \
        {"tnas_student_r05.onnx": "tnas_uniform_r05.onnx", "tnas_student_r04.onnx": "tnas_uniform_r04.onnx"}

    # collected again (nothing changed): --refresh rewrites the record-derived fields, the files stay
    save_result("tnas_cpu", {**collect(tnas_run), "experiment_file": "recipes/nni/tnas_test.yml"}, out_dir=results,
                places={str(tnas_run.resolve()): "$RUN_DIR"})
    assert refresh(rows, results, models, sources=sources)["refreshed"] == [e["file"] for e in manifest]
    assert json.loads((models / "manifest.json").read_text())["models"] == manifest
