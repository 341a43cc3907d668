"""``facenas latency``: JSON output for ONNX files, descriptions and torch; clear errors."""
from __future__ import annotations

import json

import pytest

from .conftest import toy_description


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_latency_cli_json(tmp_path, capsys, small_net):
    from facenas.adapters.runtime.onnx_export import export_onnx
    from facenas.cli import main

    onnx_path = tmp_path / "net.onnx"
    export_onnx(small_net, onnx_path, check=False)
    assert main(["latency", "--model", str(onnx_path), "--runtime", "onnxruntime", "--threads", "1", "--warmup", "2",
                 "--runs", "10", "--json"]) == 0
    res = _last_json(capsys)
    assert res["runtime"] == "onnxruntime" and res["threads"] == 1 and res["runs"] >= 10
    assert 0 < res["min_ms"] <= res["median_ms"] <= res["p90_ms"]
    assert res["input_shape"] == [1, 3, 112, 112] and res["device"]["cpu"]

    desc = tmp_path / "arch.json"
    desc.write_text(json.dumps(toy_description(64)))
    for runtime in ("torch", "onnxruntime"):
        assert main(["latency", "--model", str(desc), "--runtime", runtime, "--runs", "5", "--warmup", "1", "--json"]) == 0
        res = _last_json(capsys)
        assert res["runtime"] == runtime and res["input_shape"] == [1, 3, 64, 64] and res["median_ms"] > 0
    assert main(["latency", "--model", str(desc), "--runtime", "onnxruntime", "--clock", "cpu", "--runs", "5", "--json"]) == 0
    assert _last_json(capsys)["clock"] == "cpu"


def test_latency_cli_errors(tmp_path, capsys, small_net):
    from facenas.adapters.runtime.onnx_export import export_onnx
    from facenas.cli import main

    onnx_path = tmp_path / "net.onnx"
    export_onnx(small_net, onnx_path, check=False)
    assert main(["latency", "--model", str(onnx_path), "--runtime", "torch"]) == 2
    assert "--runtime onnxruntime" in capsys.readouterr().err
    assert main(["latency", "--model", "no_such_model", "--runtime", "torch"]) == 2
    assert "known backbones" in capsys.readouterr().err
    assert main(["latency", "--model", str(onnx_path), "--clock", "cpu", "--threads", "2"]) == 2
    assert "--threads 1" in capsys.readouterr().err


def test_missing_tensorflow_is_a_clear_error(monkeypatch, small_net):
    """TensorFlow is an optional extra: without it the TFLite path says what to install."""
    import sys

    from facenas.adapters.runtime.latency import measure_latency
    from facenas.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` raise ImportError
    try:
        measure_latency(small_net, "tflite", runs=1, warmup=0)
    except MissingDependencyError as exc:
        assert "facenas[tflite]" in str(exc)
    else:
        raise AssertionError("expected MissingDependencyError")


def test_runtime_from_the_file_and_runtimes_side_by_side_at_one_size(tmp_path, capsys):
    """Issue 19: a .tflite needed --runtime tflite; ORT and TFLite figures were taken at different sizes."""
    pytest.importorskip("tensorflow", reason="the TFLite runtime needs tensorflow")
    from facenas.cli import main

    desc = tmp_path / "arch.json"
    desc.write_text(json.dumps(toy_description(64)))
    tfl = tmp_path / "toy.tflite"
    assert main(["export", "--model", str(desc), "--out", str(tfl), "--no-check"]) == 0  # 112 input, resize in front
    capsys.readouterr()
    fast = ["--runs", "3", "--warmup", "1", "--json"]
    assert main(["latency", "--model", str(tfl), *fast]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["runtime"] == "tflite" and res["input_size"] == [112, 112]
    # the checkpoint / architecture in both runtimes: one report, one input size (native by default)
    assert main(["latency", "--model", str(desc), "--runtime", "onnxruntime", "tflite", *fast]) == 0
    both = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert both["input_size"] == [64, 64]
    assert {k: v["input_size"] for k, v in both["runtimes"].items()} == {"onnxruntime": [64, 64], "tflite": [64, 64]}
    # at the exported file's size: the same computation as the file (resize + network)
    assert main(["latency", "--model", str(desc), "--runtime", "onnxruntime", "tflite", "--input-size", "112", *fast]) == 0
    both = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [v["input_shape"] for v in both["runtimes"].values()] == [[1, 3, 112, 112], [1, 112, 112, 3]]
    # a file at another size than asked, or a file in two runtimes, is refused with the fix
    assert main(["latency", "--model", str(tfl), "--input-size", "64", *fast]) == 2
    assert "takes 112x112 input, not the requested 64x64" in capsys.readouterr().err
    assert main(["latency", "--model", str(tfl), "--runtime", "onnxruntime", "tflite", *fast]) == 2
    assert "runs in one runtime only" in capsys.readouterr().err
