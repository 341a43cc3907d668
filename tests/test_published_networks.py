"""Publishing one network of a step that trained several (issue 16, item 7): a row of published_models.yml names
the network by the name benchmarks.seed_rows groups its seed runs under, and ``benchmarks.publish_models.find``
resolves it through seed_rows (``pipeline_rows`` -> ``networks``): the primary seed's training trial, the
runtime.latency trial that timed it (alone, or among ``models``), and its statistics over seeds.

The records are synthetic, in the shapes the experiment files write (the same helpers the headline tests use:
tnas_cpu.yml's target x seed foreach timed per student, ofa_cpu.yml's foreach over fine-tuning seeds and enas_cpu.yml's
top / random arcs timed side by side); the end-to-end run of tnas_test.yml is in tests/nni/test_tnas_results.py.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from benchmarks.publish_models import ROWS_FILE, Row, find, load_rows, main, publish, refresh
from facenas.errors import ConfigError
from tests.demo.test_headline_methods import _enas_record
from tests.ofa.test_bench_ofa import _record as ofa_record, with_retrain
from tests.tnas.test_protocol import ACC, synthetic_record as tnas_record


def _row(**kw) -> Row:
    base = {"file": "x.onnx", "record": "tnas_cpu", "step": "student", "network": "n", "method": "tnas",
            "role": "searched", "target_runtime": None, "compare_with": None, "headline_name": None}
    return Row(**{**base, **kw})


def test_a_row_names_one_network_of_a_target_x_seed_foreach():
    """tnas_cpu.yml: student / uniform are foreach over (ratio, seed); each student has its own latency trial."""
    record = tnas_record()
    for step, ratio, first in (("student", 0.5, 0), ("student", 0.4, 3), ("uniform", 0.5, 0), ("uniform", 0.4, 3)):
        role = "searched" if step == "student" else "reference"
        found = find(record, _row(step=step, role=role, headline_name=f"{step} ratio {ratio}"))
        # the primary seed (2048, the foreach's first) of that target: trial index `first` of the step
        assert (found.train["step"], found.train["index"]) == (step, first)
        assert found.primary.seed == 2048 and found.train["params"]["seed"] == 2048
        assert (found.latency["step"], found.latency["index"], found.model) == (f"{step}_latency", first, None)
        assert found.checkpoint == f"$RUN_DIR/{step}/{first:03d}/train/last.pt"
        # its statistics are over the three seeds of this target only
        assert found.network.seeds == [2048, 1, 2]
        assert list(found.network.accuracy.values) == ACC[(ratio, step if step == "uniform" else "student")]


def test_networks_timed_side_by_side_resolve_to_their_name_in_models():
    """ofa_cpu.yml's finetune_* (one network over a foreach of fine-tuning seeds) and enas_cpu.yml's arcs are timed
    together by one runtime.latency trial (``models``)."""
    pick = find(ofa_record(), _row(record="ofa_cpu", step="finetune_onnxruntime_mbf_x05", method="ofa",
                                   target_runtime="onnxruntime"))
    assert (pick.train["index"], pick.primary.seed, pick.model) == (0, 2048, "ofa_onnxruntime_mbf_x05_seed2048")
    assert pick.checkpoint == "$RUN_DIR/finetune_onnxruntime_mbf_x05/000/train/last.pt"
    assert pick.primary.latency_ms == {"onnxruntime": 1.9, "tflite": 3.8}
    assert pick.network.seeds == [2048, 1, 2] and pick.network.accuracy.n == 3
    assert pick.network.latency_ms["onnxruntime"] == pytest.approx(1.91)  # the median over the seeds' timings

    top2 = find(_enas_record(), _row(record="enas_cpu", step="retrain", method="enas", target_runtime="onnxruntime",
                                     headline_name="top2"))
    assert (top2.train["index"], top2.latency["step"], top2.model) == (1, "side_by_side", "top2")
    assert top2.checkpoint == "$RUN_DIR/retrain/001/train/last.pt"
    # random1 is the random arc matching top 1: random_retrain[2] (its params.search.matches)
    random1 = find(_enas_record(), _row(record="enas_cpu", step="random_retrain", method="enas", role="reference",
                                        headline_name="random1"))
    assert (random1.train["index"], random1.model) == (2, "random1")
    assert random1.checkpoint == "$RUN_DIR/random_retrain/002/train/last.pt"


def test_the_rows_file_names_networks_the_method_records_give():
    """Every row of published_models.yml for an OFA / TNAS / ENAS record resolves in a record of that experiment
    file's shape (names, roles, methods, target runtimes agree with benchmarks.seed_rows)."""
    records = {"ofa_cpu": with_retrain(ofa_record()), "tnas_cpu": tnas_record(), "enas_cpu": _enas_record()}
    rows = [r for r in load_rows(ROWS_FILE) if r.record in records]
    assert len(rows) == 16
    resolved = {r.file for r in rows if find(records[r.record], r) is not None}
    # the synthetic OFA record has the onnxruntime picks only (no TFLite fine-tunings), and the retrain
    assert resolved == {r.file for r in rows} - {"ofa_tflite_mbf_x05.onnx", "ofa_tflite_07x_mbf_x05.onnx"}
    assert "ofa_onnxruntime_07x_mbf_x05_retrain.onnx" in resolved


def test_a_row_must_name_which_network_of_a_multi_network_step_and_agree_with_its_source():
    with pytest.raises(ConfigError, match=r"step student of tnas_cpu trained 2 networks .*name one with headline_name"):
        find(tnas_record(), _row())
    with pytest.raises(ConfigError, match="'uniform ratio 0.5' is method tnas, role reference"):
        find(tnas_record(), _row(step="uniform", headline_name="uniform ratio 0.5"))  # says searched
    with pytest.raises(ConfigError, match="target runtime None .* the rows file says tnas, searched, onnxruntime"):
        find(tnas_record(), _row(headline_name="student ratio 0.5", target_runtime="onnxruntime"))  # a FLOPs target
    assert find(tnas_record(), _row(headline_name="student ratio 0.3")) is None  # no such network (yet)


# -- publish and refresh on a synthetic tnas_cpu run with real checkpoints --------------------------------------
def _tiny_checkpoint(path: Path) -> dict:
    from facenas.adapters.insightface.backbones import get_model, save_backbone
    from facenas.nas.flops import count_flops, count_params

    net = get_model("mbf", num_features=16, width_mult=0.125, input_size=64).eval()
    path.parent.mkdir(parents=True)
    save_backbone(net, path, meta={"global_step": 7}, network=net.facenas_network, embedding_size=16)
    return {"mflops": count_flops(net, (1, 3, 64, 64)) / 1e6, "params_m": count_params(net) / 1e6, "global_step": 7}


def _tnas_run(tmp_path: Path) -> tuple[Path, Path, dict]:
    """tnas_cpu's record with the uniform ratio-0.4 students not finished yet and the student of ratio 0.5 seed 2
    still running; the ratio-0.5 primary seed's checkpoints in a run folder."""
    record = tnas_record()
    run = tmp_path / "run"
    for t in record["trials"]:
        if t["step"] == "uniform" and t["index"] >= 3 or t["step"] == "student" and t["index"] == 2:
            t["status"] = "RUNNING"
        if t["step"] in ("student", "uniform") and t["index"] == 0:  # ratio 0.5, seed 2048
            t["metrics"].update(_tiny_checkpoint(run / t["step"] / "000" / "train" / "last.pt"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "tnas_cpu.json").write_text(json.dumps({"result": record}))
    rows = tmp_path / "rows.yml"
    rows.write_text(
        "models:\n"
        "  - {file: s05.onnx, record: tnas_cpu, step: student, headline_name: student ratio 0.5, network: S,\n"
        "     method: tnas, role: searched, target_runtime: null, compare_with: u05.onnx}\n"
        "  - {file: u05.onnx, record: tnas_cpu, step: uniform, headline_name: uniform ratio 0.5, network: U,\n"
        "     method: tnas, role: reference, target_runtime: null, compare_with: null}\n"
        "  - {file: s04.onnx, record: tnas_cpu, step: student, headline_name: student ratio 0.4, network: S,\n"
        "     method: tnas, role: searched, target_runtime: null, compare_with: u04.onnx}\n"
        "  - {file: u04.onnx, record: tnas_cpu, step: uniform, headline_name: uniform ratio 0.4, network: U,\n"
        "     method: tnas, role: reference, target_runtime: null, compare_with: null}\n"
        "  - {file: top1.onnx, record: enas_cpu, step: retrain, headline_name: top1, network: T,\n"
        "     method: enas, role: searched, target_runtime: onnxruntime, compare_with: null}\n")
    return run, results, record


def test_publish_exports_the_primary_seeds_network_and_leaves_out_what_is_not_recorded(tmp_path, caplog):
    run, results, record = _tnas_run(tmp_path)
    models = tmp_path / "models"
    with caplog.at_level(logging.INFO, logger="benchmarks.publish_models"):
        out = publish(load_rows(tmp_path / "rows.yml"), {"tnas_cpu": run}, results, models)
    assert out["published"] == ["s05.onnx", "u05.onnx"]
    assert sorted(out["not_recorded_yet"]) == ["s04.onnx", "top1.onnx", "u04.onnx"]
    text = caplog.text
    assert "top1.onnx: enas_cpu is not recorded yet" in text  # no record at all: left out, not an error
    assert "u04.onnx: step uniform network 'uniform ratio 0.4' of tnas_cpu" in text
    assert "s04.onnx: its reference u04.onnx is not recorded yet" in text  # recorded, but its reference is not

    entries = {e["file"]: e for e in json.loads((models / "manifest.json").read_text())["models"]}
    s05 = entries["s05.onnx"]
    assert s05["source"]["step"] == "student" and s05["source"]["index"] == 0
    assert s05["source"]["headline_name"] == "student ratio 0.5"
    assert (s05["source"]["latency_step"], s05["source"]["latency_index"], s05["source"]["latency_model"]) == \
        ("student_latency", 0, None)
    assert s05["source"]["checkpoint"] == "$RUN_DIR/student/000/train/last.pt"
    assert s05["seed"] == 2048 and s05["lfw_acc"] == ACC[(0.5, "student")][0] and s05["compare_with"] == "u05.onnx"
    assert s05["latency_ms"] == {"onnxruntime": pytest.approx(1.5 + 2048 / 1e5), "tflite": pytest.approx(1.7)}
    assert s05["seeds"]["seeds"] == [2048, 1] and s05["seeds"]["values"] == ACC[(0.5, "student")][:2]  # seed 2 runs
    assert s05["seeds"]["metric"] == "lfw_acc"
    assert entries["u05.onnx"]["seeds"]["n"] == 3 and entries["u05.onnx"]["role"] == "reference"
    for e in entries.values():
        assert e["sha256"] == hashlib.sha256((models / e["file"]).read_bytes()).hexdigest()

    # the seed-2 student finishes and is collected: --refresh adds it to the statistics, the file stays
    for t in record["trials"]:
        if t["step"] == "student" and t["index"] == 2:
            t["status"] = "SUCCEEDED"
    (results / "tnas_cpu.json").write_text(json.dumps({"result": record}))
    before = (models / "s05.onnx").stat().st_mtime_ns
    assert main(["--refresh", "--rows", str(tmp_path / "rows.yml"), "--results", str(results), "--out", str(models)]) == 0
    fresh = {e["file"]: e for e in json.loads((models / "manifest.json").read_text())["models"]}
    assert fresh["s05.onnx"]["seeds"]["seeds"] == [2048, 1, 2]
    assert fresh["s05.onnx"]["seeds"]["values"] == ACC[(0.5, "student")]
    assert fresh["s05.onnx"]["sha256"] == s05["sha256"] and (models / "s05.onnx").stat().st_mtime_ns == before
    assert fresh["s05.onnx"]["source"] == s05["source"]


def test_refresh_refuses_a_record_whose_primary_seed_is_another_network(tmp_path):
    run, results, record = _tnas_run(tmp_path)
    models = tmp_path / "models"
    publish(load_rows(tmp_path / "rows.yml"), {"tnas_cpu": run}, results, models)
    # the record now holds the ratio-0.5 student's seed 2048 as trial 1 (e.g. a re-ordered foreach)
    for t in record["trials"]:
        if t["step"] == "student" and t["index"] == 0:
            t["status"] = "FAILED"
    (results / "tnas_cpu.json").write_text(json.dumps({"result": record}))
    from facenas.errors import FacenasError

    with pytest.raises(FacenasError, match="s05.onnx: the primary run of tnas_cpu no longer holds the published network"):
        refresh(load_rows(tmp_path / "rows.yml"), results, models)

