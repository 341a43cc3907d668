"""Export pass/fail checks (issue 19): int8 of a network native below 112 px keeps faces apart; failing files are not kept."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facenas.adapters.runtime.faces import normalise

from .conftest import toy_description


def _bn_from_faces(net: torch.nn.Module, faces: np.ndarray, size: int) -> torch.nn.Module:
    """BatchNorm statistics recomputed on faces: a random-init network whose embeddings differ per face."""
    for mod in net.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the one batch
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(normalise(faces, (size, size))))
    return net.eval()


def _face_source(synthetic_data):
    from facenas.utils.paths import shared_data_dir

    real = shared_data_dir() / "celeba299"
    return real if real.exists() else synthetic_data


def _small_64px_net(source):
    """A small MobileFaceNet native at 64 px, seeded, with BatchNorm statistics from real-ish faces."""
    from facenas.adapters.insightface.backbones import get_model
    from facenas.adapters.runtime.faces import load_faces

    torch.manual_seed(0)
    return _bn_from_faces(get_model("mbf", num_features=32, width_mult=0.25, blocks=(1, 2, 2, 1), input_size=64),
                          load_faces(source, 64, seed=3), 64)


@pytest.mark.tflite
def test_int8_of_a_64px_network_at_112_keeps_faces_apart(tmp_path, synthetic_data):
    """Issue 19: the int8 file of a 64-px network, exported at 112 (resize in front), gave one embedding for all faces."""
    pytest.importorskip("tensorflow", reason="TFLite export needs tensorflow (pip install 'facenas[tflite]')")
    from facenas.adapters.runtime.export_checks import ExportThresholds, embedding_spread
    from facenas.adapters.runtime.faces import load_faces
    from facenas.adapters.runtime.onnx_export import compare
    from facenas.adapters.runtime.tflite_export import TFLiteEmbedder, export_tflite

    source = _face_source(synthetic_data)
    net = _small_64px_net(source)
    faces = load_faces(source, 16, seed=5)
    path = tmp_path / "q.tflite"
    # random weights quantise less cleanly than trained ones: the cosine limit is lowered, the spread one is not
    res = export_tflite(net, path, (112, 112), native_size=(64, 64), int8=True, calibration=source,
                        calibration_images=24, faces=faces, thresholds=ExportThresholds(min_cosine=0.5))
    assert res["checks"]["passed"] and path.is_file()
    x = normalise(faces, (112, 112))
    with torch.no_grad():
        ref = net(torch.from_numpy(normalise(faces, (64, 64)))).numpy()
    out = TFLiteEmbedder(str(path))(x)
    assert embedding_spread(ref) > 0.05  # the float network tells these faces apart
    assert embedding_spread(out) > 0.5 * embedding_spread(ref)  # and so does the int8 file (was ~1e-7)
    assert compare(ref, out, "int8", "faces").min_cosine > 0.5
    assert res["int8_spread_ratio"] > 0.5


class _Offset(torch.nn.Module):
    """A network whose face-dependent part is 1e-4 of a constant offset: int8 output steps erase it."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x) * 1e-3 + 10.0


@pytest.mark.tflite
def test_int8_export_that_collapses_fails_naming_the_spread(tmp_path, synthetic_data):
    pytest.importorskip("tensorflow", reason="TFLite export needs tensorflow (pip install 'facenas[tflite]')")
    from facenas.adapters.runtime.export_checks import ExportCheckError, ExportThresholds
    from facenas.adapters.runtime.faces import load_faces
    from facenas.adapters.runtime.tflite_export import export_tflite

    source = _face_source(synthetic_data)
    net = _small_64px_net(source)
    path = tmp_path / "collapsed.tflite"
    with pytest.raises(ExportCheckError, match="spread across faces") as info:
        export_tflite(_Offset(net), path, (64, 64), native_size=(64, 64), int8=True, calibration=source,
                      calibration_images=16, faces=load_faces(source, 16, seed=5),
                      thresholds=ExportThresholds(min_cosine=0.0))
    assert info.value.exit_code == 3 and not path.exists()


def test_spread_and_thresholds():
    from facenas.adapters.runtime.export_checks import ExportThresholds, check_export, embedding_spread, spread_ratio

    rng = np.random.default_rng(0)
    apart = rng.standard_normal((10, 8))
    same = np.tile(apart[:1], (10, 1)) + 1e-7 * rng.standard_normal((10, 8))
    assert embedding_spread(apart) > 0.1 and embedding_spread(same) < 1e-6
    assert spread_ratio(apart, same) < 1e-5 and spread_ratio(apart, apart) == pytest.approx(1.0)
    parity = {"min_cosine": 0.95, "num_faces": 10}
    t = ExportThresholds()
    assert check_export("f", parity, None, None, t, int8=True) == []  # 0.95 >= 0.9 for int8
    assert "min cosine" in check_export("f", parity, None, None, t, int8=False)[0]  # < 0.999 for float32
    acc = {"bin": "lfw.bin", "float32_acc": 0.9, "int8_acc": 0.8, "change": -0.1}
    fails = check_export("q", None, 0.01, acc, t, int8=True)
    assert len(fails) == 2 and "spread" in fails[0] and "drops 0.9000 -> 0.8000" in fails[1]


def test_export_cli_exits_3_and_removes_a_file_below_its_parity_threshold(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from facenas.cli import main

    desc = tmp_path / "arch.json"
    desc.write_text(json.dumps(toy_description(112)))
    out = tmp_path / "toy.onnx"
    assert main(["export", "--model", str(desc), "--out", str(out), "--json"]) == 0 and out.is_file()
    assert main(["export", "--model", str(desc), "--out", str(out), "--min-cosine", "1.5"]) == 3
    err = capsys.readouterr().err
    assert "min cosine to the torch model" in err and "below 1.5" in err and "was removed" in err
    assert not out.exists()
