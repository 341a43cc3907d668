"""TFLite export (TensorFlow NHWC rebuild): float32 parity, int8 with representative faces, latency."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.tflite
pytest.importorskip("tensorflow", reason="TFLite tests need tensorflow (pip install 'facenas[tflite]')")

from facenas.adapters.runtime.faces import normalise  # noqa: E402

from .conftest import realistic, toy_description  # noqa: E402


def test_float32_parity_small_net(tmp_path, small_net, faces):
    from facenas.adapters.runtime.tflite_export import TFLiteEmbedder, export_tflite

    path = tmp_path / "net.tflite"
    res = export_tflite(small_net, path, faces=faces)
    assert res["parity"]["max_rel_diff"] < 1e-5 and res["parity"]["min_cosine"] > 0.99999
    emb = TFLiteEmbedder(str(path))
    assert emb.input_size == (112, 112) and emb.nhwc
    with torch.no_grad():
        ref = small_net(torch.from_numpy(normalise(faces))).numpy()
    np.testing.assert_allclose(emb(normalise(faces)), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_rebuild_op_coverage_mobilefacenet_and_naive_layout(faces):
    """MobileFaceNet (PReLU, depthwise, GDC, BN1d) and an OFA-style block (h-swish, SE) in both layouts."""
    from facenas.adapters.insightface.backbones import get_model
    from facenas.adapters.runtime.onnx_export import compare
    from facenas.adapters.runtime.tflite_export import TFLiteEmbedder, torch_to_tflite

    net = realistic(get_model("mbf", num_features=32, width_mult=0.25, input_size=64))
    x = normalise(faces, (64, 64))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    for layout in ("nhwc", "nchw"):
        model = torch_to_tflite(net, (3, 64, 64), layout=layout)
        out = TFLiteEmbedder(model)(x)
        assert compare(ref, out, layout, "faces").max_rel_diff < 1e-5, layout


def test_int8_with_representative_faces_and_accuracy_change(tmp_path, synthetic_data):
    from facenas.adapters.insightface.backbones import get_model
    from facenas.adapters.runtime.faces import load_faces
    from facenas.adapters.runtime.tflite_export import export_tflite

    net = realistic(get_model(toy_description(112, width=8)))
    faces = load_faces(synthetic_data, 8)
    res = export_tflite(net, tmp_path / "q.tflite", int8=True, calibration=synthetic_data, calibration_images=16,
                        eval_bin=synthetic_data / "val.bin", faces=faces)
    assert res["int8"] and res["calibration_images"] == 16
    from facenas.adapters.runtime.tflite_export import interpreter

    dtypes = [d["dtype"] for d in interpreter(str(tmp_path / "q.tflite")).get_tensor_details()]
    assert sum(d == np.int8 for d in dtypes) > len(dtypes) // 2  # weights and activations are int8
    assert res["int8_parity"]["min_cosine"] > 0.9  # int8 embeddings stay close in direction
    acc = res["accuracy"]
    assert 0 <= acc["float32_acc"] <= 1 and 0 <= acc["int8_acc"] <= 1
    assert acc["change"] == pytest.approx(acc["int8_acc"] - acc["float32_acc"])


def test_tflite_latency_cli(tmp_path, capsys):
    from facenas.cli import main

    desc = tmp_path / "arch.json"
    desc.write_text(json.dumps(toy_description(64)))
    assert main(["latency", "--model", str(desc), "--runtime", "tflite", "--runs", "5", "--warmup", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["runtime"] == "tflite" and res["input_shape"] == [1, 64, 64, 3] and res["median_ms"] > 0
    out = tmp_path / "toy.tflite"
    assert main(["export", "--model", str(desc), "--out", str(out), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exported["parity"]["max_rel_diff"] < 1e-4
    assert main(["latency", "--model", str(out), "--runtime", "tflite", "--runs", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["input_shape"] == [1, 112, 112, 3]


def test_unsupported_op_is_named():
    import onnx
    from onnx import TensorProto, helper

    from facenas.adapters.runtime.tf_rebuild import OnnxToTF, UnsupportedOpError

    node = helper.make_node("LpNormalization", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(UnsupportedOpError, match="LpNormalization"):
        OnnxToTF(helper.make_model(graph))
    assert onnx


def test_enas_arcs_rebuild_with_factorized_reduction(faces):
    """ENAS cells: factorized reduction exports an asymmetric Pad (bounds from ConstantOfShape / Slice shape
    arithmetic) and a Slice of the padded map; both must land on H and W of the NHWC tensor."""
    from facenas.adapters.runtime.onnx_export import compare
    from facenas.adapters.runtime.tflite_export import TFLiteEmbedder, torch_to_tflite
    from facenas.plugins.space import create_space

    space = create_space("enas", input_size=64, embedding_size=32, channels=8)
    x = normalise(faces, (64, 64))
    for seed in range(2):
        net = realistic(space.build(space.sample(np.random.default_rng(seed))), seed)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        out = TFLiteEmbedder(torch_to_tflite(net, (3, 64, 64)))(x)
        assert compare(ref, out, "enas", "faces").max_rel_diff < 1e-5, seed


def test_slice_and_asymmetric_pad_on_nhwc_maps():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from facenas.adapters.runtime.tf_rebuild import OnnxToTF

    x = np.ascontiguousarray(np.arange(1 * 2 * 3 * 5, dtype=np.float32).reshape(1, 2, 3, 5))
    inits = [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 2], np.int64), "pads"),
             numpy_helper.from_array(np.array([1, 1], np.int64), "starts"),
             numpy_helper.from_array(np.array([np.iinfo(np.int64).max, 6], np.int64), "ends"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "steps")]
    conv_w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")  # depthwise identity: keeps NHWC
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=2),
             helper.make_node("Pad", ["c", "pads"], ["p"]),
             helper.make_node("Slice", ["p", "starts", "ends", "axes", "steps"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [*inits, conv_w])
    conv = OnnxToTF(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    fn = conv.function()
    got = fn(np.transpose(x, (0, 2, 3, 1))).numpy()
    want = np.pad(x, [(0, 0), (0, 0), (0, 1), (0, 2)])[:, :, 1:, 1:6:2]
    np.testing.assert_array_equal(got, want)
    assert onnx
