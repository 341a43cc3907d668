"""Export graph passes: the PReLU rewrite is exact in onnxruntime and TFLite, on by default, can be turned off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facenas.errors import ConfigError

from .conftest import realistic


def _mbf(act: str = "prelu") -> torch.nn.Module:
    from facenas.adapters.insightface.backbones import get_model

    torch.manual_seed(0)
    return realistic(get_model("mbf", num_features=16, width_mult=0.25, input_size=32, blocks=(1, 1, 1, 1), act=act))


def _ops(path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _ort(path, x: np.ndarray) -> np.ndarray:
    from facenas.adapters.runtime.latency import onnx_session

    sess = onnx_session(path, 1)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("form", ["prelu_relu_min", "prelu_max_min"])
def test_prelu_rewrite_is_bit_identical_in_onnxruntime(tmp_path, form):
    from facenas.adapters.runtime.onnx_export import torch_export

    net = _mbf()
    plain, rewritten = tmp_path / "plain.onnx", tmp_path / "rewritten.onnx"
    torch_export(net, plain, (3, 32, 32), dynamic_batch=False, passes=())
    torch_export(net, rewritten, (3, 32, 32), dynamic_batch=False, passes=(form,))
    n_prelu = _ops(plain)["PRelu"]
    assert n_prelu == sum(isinstance(m, torch.nn.PReLU) for m in net.modules()) > 10
    ops = _ops(rewritten)
    assert "PRelu" not in ops and ops["Min"] == n_prelu
    assert ops["Relu" if form == "prelu_relu_min" else "Max"] == n_prelu
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    a, b = _ort(plain, x), _ort(rewritten, x)
    assert np.abs(a).max() > 1e-2 and np.array_equal(a, b)


def test_export_onnx_rewrites_by_default_checks_parity_and_can_be_turned_off(tmp_path, faces):
    from facenas.adapters.runtime.graph_passes import default_passes
    from facenas.adapters.runtime.onnx_export import export_onnx

    assert default_passes("onnxruntime") == ("prelu_max_min",)
    assert default_passes("tflite") == ()  # native PRELU: the rewrite breaks int8 (tests/runtime/test_export_checks.py)
    net = _mbf()
    report = export_onnx(net, tmp_path / "best.onnx", faces=faces)  # 112x112 file, insightface conventions kept
    assert "PRelu" not in _ops(tmp_path / "best.onnx") and report.max_rel_diff < 1e-5
    export_onnx(net, tmp_path / "plain.onnx", check=False, passes=())
    assert _ops(tmp_path / "plain.onnx")["PRelu"] > 0


def test_a_network_without_prelu_is_left_as_exported(tmp_path):
    from facenas.adapters.runtime.onnx_export import torch_export

    net = _mbf("relu")
    torch_export(net, tmp_path / "a.onnx", (3, 32, 32), dynamic_batch=False)
    torch_export(net, tmp_path / "b.onnx", (3, 32, 32), dynamic_batch=False, passes=())
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_unknown_pass_or_runtime_names_the_known_ones():
    from facenas.adapters.runtime.graph_passes import apply_passes, default_passes

    with pytest.raises(ConfigError, match=r"unknown graph pass\(es\) \['fuse_everything'\]; known: \['prelu_max_min'"):
        apply_passes(None, ["fuse_everything"])
    with pytest.raises(ConfigError, match="no graph passes are defined for runtime 'coreml'"):
        default_passes("coreml")


@pytest.mark.tflite
def test_tflite_rebuild_translates_the_rewrite_with_the_same_outputs():
    pytest.importorskip("tensorflow")
    import onnx

    from facenas.adapters.runtime.graph_passes import apply_passes
    from facenas.adapters.runtime.tflite_export import TFLiteEmbedder, onnx_static, onnx_to_tflite

    net = _mbf()
    proto = onnx_static(net, (3, 32, 32))  # TFLite's default passes keep the native PRelu
    assert any(n.op_type == "PRelu" for n in proto.graph.node)
    apply_passes(proto, ["prelu_max_min"])  # the rewrite still translates, for a float32 export that asks for it
    assert not any(n.op_type == "PRelu" for n in proto.graph.node)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    out = TFLiteEmbedder(onnx_to_tflite(proto))(x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    maxed = onnx.ModelProto()
    maxed.CopyFrom(proto)
    assert apply_passes(maxed, ["prelu_relu_min"]) == {"prelu_relu_min": 0}  # nothing left to rewrite
