"""ONNX export: parity with torch, insightface.model_zoo loading, dynamic batch, 64x64 networks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facenas.adapters.runtime.faces import normalise
from facenas.adapters.runtime.onnx_export import export_onnx, insightface_conventions, _rename_nodes

from .conftest import realistic, toy_description


def _torch_emb(model, faces, size=None):
    with torch.no_grad():
        return model(torch.from_numpy(normalise(faces, size))).numpy()


def test_export_parity_and_model_zoo(tmp_path, small_net, faces):
    import onnxruntime as ort
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    path = tmp_path / "net.onnx"
    report = export_onnx(small_net, path, faces=faces, faces_source="test faces")
    ref = _torch_emb(small_net, faces)
    assert np.abs(ref).max() > 1e-2  # realistic activations, not a degenerate all-zero network
    assert report.max_rel_diff < 1e-5 and report.min_cosine > 0.99999
    assert report.insightface_max_abs_diff is not None and report.insightface_max_abs_diff < 1e-4 * np.abs(ref).max()

    zoo = get_model(str(path))
    assert isinstance(zoo, ArcFaceONNX)
    assert (zoo.input_mean, zoo.input_std, zoo.input_size) == (127.5, 127.5, (112, 112))
    feats = zoo.get_feat([np.ascontiguousarray(f[:, :, ::-1]) for f in faces])  # insightface takes BGR
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] == "batch"
    out3 = sess.run(None, {sess.get_inputs()[0].name: normalise(faces[:3])})[0]
    np.testing.assert_allclose(out3, ref[:3], rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_native_64_network_deploys_at_112(tmp_path, faces):
    """A CPU-scale (64x64) network exports with the data layer's resize in front: 112x112 faces in."""
    from facenas.adapters.insightface.backbones import get_model
    from insightface.model_zoo import get_model as zoo_get

    net = realistic(get_model(toy_description(64)))
    path = tmp_path / "net64.onnx"
    report = export_onnx(net, path, faces=faces)
    ref = _torch_emb(net, faces, (64, 64))  # what VerificationEvaluator(image_size=64) computes
    assert report.max_rel_diff < 1e-5
    feats = zoo_get(str(path)).get_feat([np.ascontiguousarray(f[:, :, ::-1]) for f in faces])
    np.testing.assert_allclose(feats, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_conventions_flag_mxnet_style_node_names():
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Sub", ["x", "c"], ["a"], name="Sub_0"),
             helper.make_node("Mul", ["a", "c"], ["y"], name="Mul_1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 112, 112])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 112, 112])],
                              [helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0])])
    model = helper.make_model(graph)
    assert any("normalisation" in p for p in insightface_conventions(model))
    _rename_nodes(model)
    assert insightface_conventions(model) == []
    bad = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])],
                                              [helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0])]))
    assert any("multiple of 16" in p for p in insightface_conventions(bad))
    assert isinstance(onnx, object)


def test_export_cli_json(tmp_path, capsys):
    from facenas.cli import main

    desc = tmp_path / "arch.json"
    desc.write_text(json.dumps(toy_description(112)))
    out = tmp_path / "toy.onnx"
    assert main(["export", "--model", str(desc), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["format"] == "onnx" and out.is_file()
    assert result["parity"]["num_faces"] > 0 and result["parity"]["max_rel_diff"] < 1e-4
    assert main(["export", "--model", str(desc), "--out", str(tmp_path / "x.bin")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
