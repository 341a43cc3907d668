"""The published networks (benchmarks/results/models, issue 16 item 7) and the command that makes them.

Fast: the manifest's schema, each file's size and sha256, its numbers equal to its record's, that
``insightface.model_zoo.get_model`` loads it and gives the embedding the manifest states, and
``benchmarks.publish_models`` on a small synthetic run. Slow (real ``lfw.bin``): ``facenas eval
--model FILE --bin lfw.bin`` reproduces each ``lfw_acc`` to 1e-3.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks._common import RESULTS_DIR
from benchmarks.publish_models import (ACC_TOLERANCE, LATENCY_RUNTIMES, MAX_BYTES, ROLES, ROWS_FILE, TARGET_RUNTIMES,
                                       find, load_record, load_rows, main, publish, refresh)
from facenas.errors import ConfigError, FacenasError

MODELS = RESULTS_DIR / "models"
MANIFEST = MODELS / "manifest.json"
#: the fields issue 16 asks of every entry, with their types
FIELDS = {"file": str, "method": str, "role": str, "target_runtime": (str, type(None)), "seed": int,
          "lfw_acc": float, "lfw_acc_std": float, "latency_ms": dict, "mflops": float, "params_m": float,
          "compare_with": (str, type(None)), "budget": str, "sha256": str}


def _entries() -> list[dict]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["models"] if MANIFEST.is_file() else []


ENTRIES = _entries()
IDS = [e.get("file") for e in ENTRIES]


def _record_trials(entry: dict) -> tuple[dict, dict]:
    """The train and latency trials the entry's ``source`` names in its record's primary run (``trials``); an entry
    published before ``source`` named trial indexes is of a step that trained one network and was timed once."""
    src = entry["source"]
    record = json.loads((RESULTS_DIR.parent.parent / src["record"]).read_text(encoding="utf-8"))["result"]
    done = [t for t in record["trials"] if t["status"] == "SUCCEEDED"]

    def one(step, index):
        found = [t for t in done if t["step"] == step and (index is None or t.get("index") == index)]
        assert len(found) == 1, (step, index)
        return found[0]

    return one(src["step"], src.get("index")), one(src["latency_step"], src.get("latency_index"))


# -- the published files -------------------------------------------------------------------------
def test_manifest_schema():
    if not MANIFEST.is_file():
        pytest.skip("benchmarks/results/models/manifest.json has not been written (python -m benchmarks.publish_models)")
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    assert list(manifest) == ["models"]
    files = [e["file"] for e in manifest["models"]]
    assert len(files) == len(set(files))
    for e in manifest["models"]:
        for field, kind in FIELDS.items():
            assert isinstance(e.get(field), kind), f"{e.get('file')}: {field}={e.get(field)!r} is not {kind}"
        assert e["role"] in ROLES and e["target_runtime"] in (None, *TARGET_RUNTIMES)
        assert set(e["latency_ms"]) == set(LATENCY_RUNTIMES)
        assert all(isinstance(v, float) and v > 0 for v in e["latency_ms"].values())
        assert 0.5 <= e["lfw_acc"] <= 1.0 and len(e["sha256"]) == 64
        assert e["embedding_size"] in (128, 512)
        seeds = e["seeds"]  # the step over every recorded seed run; the file is one of them
        assert seeds["n"] == len(seeds["values"]) == len(seeds["seeds"]) >= 1
        assert seeds["values"][seeds["seeds"].index(e["seed"])] == e["lfw_acc"]
        assert seeds["mean"] == pytest.approx(float(np.mean(seeds["values"])))
        assert (seeds["std"] is None) == (seeds["n"] == 1)
        if e["role"] == "reference":
            assert e["compare_with"] is None and e["target_runtime"] is None
        else:  # a searched network names the reference it is compared with
            ref = next(x for x in manifest["models"] if x["file"] == e["compare_with"])
            # its target runtime: none only for TNAS, whose search targets a FLOPs budget
            assert ref["role"] == "reference" and (e["target_runtime"] is not None or e["method"] == "tnas")


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_published_file_size_and_sha256(entry):
    path = MODELS / entry["file"]
    assert path.is_file()
    assert path.stat().st_size <= MAX_BYTES and path.stat().st_size == entry["size_bytes"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_manifest_numbers_are_the_recorded_ones(entry):
    train, latency = _record_trials(entry)
    m = train["metrics"]
    assert (entry["lfw_acc"], entry["lfw_acc_std"], entry["mflops"], entry["params_m"]) == \
        (m["lfw_acc"], m["lfw_acc_std"], m["mflops"], m["params_m"])
    assert entry["seed"] == train["params"]["seed"]
    model = entry["source"].get("latency_model")  # its name in a latency trial that timed several networks
    timed = latency["metrics"]["latency_ms"] if model is None else latency["metrics"]["latency_ms"][model]
    assert entry["latency_ms"] == {rt: timed[rt] for rt in LATENCY_RUNTIMES}
    assert (latency["params"]["model"] if model is None else latency["params"]["models"][model]) == \
        entry["source"]["checkpoint"]
    assert entry["source"]["checkpoint"].startswith(f"$RUN_DIR/{train['step']}/")


def test_every_recorded_row_is_published():
    """The manifest lists what exists: each row of published_models.yml whose network is recorded and timed (and,
    for a searched one, its reference too); a row whose record does not exist yet is not published."""
    published = {e["file"] for e in ENTRIES}
    rows = load_rows(ROWS_FILE)
    recorded = set()
    for row in rows:
        record = load_record(RESULTS_DIR, row.record)
        if record is not None and find(record, row) is not None:
            recorded.add(row.file)
    expected = {r.file for r in rows if r.file in recorded and (r.compare_with is None or r.compare_with in recorded)}
    assert published == expected


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_insightface_model_zoo_loads_it(entry):
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    model = get_model(str(MODELS / entry["file"]), providers=["CPUExecutionProvider"])
    assert isinstance(model, ArcFaceONNX)
    assert tuple(model.input_size) == tuple(entry["input_size"]) == (112, 112)
    assert (model.input_mean, model.input_std) == (127.5, 127.5)
    faces = np.random.default_rng(0).integers(0, 256, size=(2, 112, 112, 3), dtype=np.uint8)
    feat = model.get_feat(list(faces))
    assert feat.shape == (2, entry["embedding_size"]) and np.isfinite(feat).all()


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_facenas_eval_reproduces_the_recorded_lfw_acc(entry, lfw_bin):
    out = subprocess.run([sys.executable, "-m", "facenas", "-q", "eval", "--model", str(MODELS / entry["file"]),
                          "--bin", str(lfw_bin), "--threads", "1", "--json"],
                         capture_output=True, text=True, timeout=900, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])["lfw_acc"]
    assert abs(got - entry["lfw_acc"]) <= ACC_TOLERANCE


# -- the command, on a small synthetic run -------------------------------------------------------
def _fake_run(tmp_path: Path, global_step: int = 7) -> tuple[Path, Path, dict]:
    """A run folder with one engine.train step's last.pt and a record of it and of its latency step."""
    from facenas.adapters.insightface.backbones import get_model, save_backbone
    from facenas.nas.flops import count_flops, count_params

    net = get_model("mbf", num_features=16, width_mult=0.125, input_size=64).eval()
    run = tmp_path / "run"
    ckpt = run / "a" / "000" / "train" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    save_backbone(net, ckpt, meta={"global_step": global_step}, network=net.facenas_network, embedding_size=16)
    metrics = {"lfw_acc": 0.61, "lfw_acc_std": 0.02, "epochs": 2.0, "global_step": 7,
               "mflops": count_flops(net, (1, 3, 64, 64)) / 1e6, "params_m": count_params(net) / 1e6}
    record = {"pipeline": "p", "experiment_file": "recipes/nni/x.yml", "trials": [
        {"step": "a", "stage": "engine.train", "status": "SUCCEEDED", "params": {"config": "c.py", "seed": 5, "threads": 1},
         "metrics": metrics},
        {"step": "a_latency", "stage": "runtime.latency", "status": "SUCCEEDED",
         "params": {"model": "$RUN_DIR/a/000/train/last.pt", "threads": 1},
         "metrics": {"latency_ms": {"onnxruntime": 0.3, "tflite": 0.4}, "threads": 1, "input_size": [64, 64],
                     "passes": {"onnxruntime": ["prelu_max_min"], "tflite": ["prelu_max_min"]}}}]}
    results = tmp_path / "results"
    results.mkdir()
    (results / "rec.json").write_text(json.dumps({"result": record}))
    rows = tmp_path / "rows.yml"
    rows.write_text("models:\n"
                    "  - {file: a.onnx, record: rec, step: a, network: A, method: hand-designed, role: reference,\n"
                    "     target_runtime: null, compare_with: null}\n"
                    "  - {file: b.onnx, record: rec, step: b, network: B, method: ofa, role: searched,\n"
                    "     target_runtime: tflite, compare_with: a.onnx}\n")
    return run, results, metrics


def test_publish_exports_recorded_steps_with_their_numbers(tmp_path):
    run, results, metrics = _fake_run(tmp_path)
    out = publish(load_rows(tmp_path / "rows.yml"), {"rec": run}, results, tmp_path / "models")
    assert out["published"] == ["a.onnx"] and out["not_recorded_yet"] == ["b.onnx"]  # b's step is not recorded
    (entry,) = json.loads((tmp_path / "models" / "manifest.json").read_text())["models"]
    assert {k: entry[k] for k in ("lfw_acc", "lfw_acc_std", "mflops", "params_m", "seed")} == \
        {**{k: metrics[k] for k in ("lfw_acc", "lfw_acc_std", "mflops", "params_m")}, "seed": 5}
    assert entry["latency_ms"] == {"onnxruntime": 0.3, "tflite": 0.4} and entry["embedding_size"] == 16
    assert entry["sha256"] == hashlib.sha256((tmp_path / "models" / "a.onnx").read_bytes()).hexdigest()
    assert entry["source"]["checkpoint"] == "$RUN_DIR/a/000/train/last.pt" and entry["onnx_passes"] == ["prelu_max_min"]
    assert entry["budget"] == "2 epochs of c.py on 1 CPU thread(s)"


def test_publish_refuses_weights_that_are_not_the_recorded_ones(tmp_path):
    run, results, _ = _fake_run(tmp_path, global_step=3)  # last.pt of another step than the record's
    with pytest.raises(FacenasError, match="global_step 3 differs from the record's 7"):
        publish(load_rows(tmp_path / "rows.yml"), {"rec": run}, results, tmp_path / "models")
    with pytest.raises(FacenasError, match="--run rec=RUN_DIR"):
        publish(load_rows(tmp_path / "rows.yml"), {}, results, tmp_path / "models")


def test_bad_rows_file_is_one_line_exit_2(tmp_path, capsys):
    rows = tmp_path / "rows.yml"
    rows.write_text("models:\n  - {file: a.onnx, record: r, step: s, network: n, method: m, role: best,\n"
                    "     target_runtime: null, compare_with: null}\n")
    with pytest.raises(ConfigError, match=r"models\[0\]: role 'best' must be one of \['reference', 'searched'\]"):
        load_rows(rows)
    assert main(["--rows", str(rows)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "role 'best'" in err


def test_publish_states_the_seed_statistics_and_refresh_rewrites_them_without_export(tmp_path):
    run, results, metrics = _fake_run(tmp_path)
    record = json.loads((results / "rec.json").read_text())["result"]
    other = json.loads(json.dumps(record["trials"]))
    for t in other:
        t["params"]["seed"] = 6 if "seed" in t["params"] else None
    other[0]["metrics"]["lfw_acc"] = 0.65
    record["runs"] = {"5": {"seed": 5, "trials": record["trials"], "pending_steps": []},
                      "6": {"seed": 6, "trials": other, "pending_steps": []}}
    (results / "rec.json").write_text(json.dumps({"result": record}))
    models = tmp_path / "models"
    publish(load_rows(tmp_path / "rows.yml"), {"rec": run}, results, models)
    (entry,) = json.loads((models / "manifest.json").read_text())["models"]
    assert entry["seed"] == 5 and entry["lfw_acc"] == 0.61  # the file is the primary run's network
    assert entry["seeds"]["n"] == 2 and entry["seeds"]["seeds"] == [5, 6] and entry["seeds"]["values"] == [0.61, 0.65]
    assert entry["seeds"]["mean"] == pytest.approx(0.63) and entry["seeds"]["std"] == pytest.approx(0.04 / 2 ** 0.5)
    assert entry["device"] == {"train_host": None, "train_threads": 1, "latency_cpu": None}

    # a third seed recorded later: --refresh updates the statistics, the file stays as it is
    third = json.loads(json.dumps(other))
    third[0]["metrics"]["lfw_acc"] = 0.60
    third[0]["params"]["seed"] = 7
    record["runs"]["7"] = {"seed": 7, "trials": third, "pending_steps": []}
    (results / "rec.json").write_text(json.dumps({"result": record}))
    before = (models / "a.onnx").stat().st_mtime_ns
    assert main(["--refresh", "--rows", str(tmp_path / "rows.yml"), "--results", str(results), "--out", str(models)]) == 0
    (fresh,) = json.loads((models / "manifest.json").read_text())["models"]
    assert fresh["seeds"]["values"] == [0.61, 0.65, 0.60] and fresh["sha256"] == entry["sha256"]
    assert (models / "a.onnx").stat().st_mtime_ns == before
    # refresh refuses a record whose primary run no longer holds the file's network, or another file
    changed = json.loads(json.dumps(record))
    for trials in (changed["trials"], changed["runs"]["5"]["trials"]):  # the primary run and its repeat
        trials[0]["metrics"]["lfw_acc"] = 0.7
    (results / "rec.json").write_text(json.dumps({"result": changed}))
    with pytest.raises(FacenasError, match="lfw_acc 0.61 in the manifest, 0.7 in rec's primary run"):
        refresh(load_rows(tmp_path / "rows.yml"), results, models)
    (results / "rec.json").write_text(json.dumps({"result": record}))
    (models / "a.onnx").write_bytes(b"x")
    with pytest.raises(FacenasError, match="not the file the manifest describes"):
        refresh(load_rows(tmp_path / "rows.yml"), results, models)


def test_publishing_without_a_records_run_folder_keeps_its_published_files_as_they_are(tmp_path):
    """Only the runs that changed need their folders: a published row of a record whose folder is not given keeps
    its file and entry (not exported again), checked against the manifest (sha256) and the record."""
    run, results, _ = _fake_run(tmp_path)
    models = tmp_path / "models"
    publish(load_rows(tmp_path / "rows.yml"), {"rec": run}, results, models)
    (entry,) = json.loads((models / "manifest.json").read_text())["models"]
    before = (models / "a.onnx").stat().st_mtime_ns
    out = publish(load_rows(tmp_path / "rows.yml"), {}, results, models)
    assert out["published"] == ["a.onnx"] and (models / "a.onnx").stat().st_mtime_ns == before
    assert json.loads((models / "manifest.json").read_text())["models"] == [entry]
    (models / "a.onnx").write_bytes(b"not the published network")
    with pytest.raises(FacenasError, match="a.onnx: missing or not the file the manifest describes"):
        publish(load_rows(tmp_path / "rows.yml"), {}, results, models)
