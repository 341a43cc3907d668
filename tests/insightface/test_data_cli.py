"""`facenas data ...` and `facenas eval`: JSON output, real data, ONNX evaluation, exit code 2 on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from facenas.cli import main


def run_cli(*args: str) -> tuple[int, dict | None, str]:
    proc = subprocess.run([sys.executable, "-m", "facenas", *args], capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    payload = json.loads(last) if last.startswith("{") else None
    return proc.returncode, payload, proc.stderr


def test_synth_info_pack_round_trip(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "syn"), "--identities", "5", "--images-per-identity", "4",
                 "--val-identities", "4", "--val-pairs", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["images"] == 20 and out["identities"] == 5 and out["val_pairs"] == 10
    assert main(["data", "info", str(tmp_path / "syn"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (info["images"], info["identities"], info["image_size"], info["all_decoded"]) == (20, 5, [112, 112], True)
    assert main(["data", "info", str(tmp_path / "syn" / "val.bin"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (info["pairs"], info["same"]) == (10, 5)

    # image folder -> pack -> read back: lossless (same encoded bytes, same labels)
    from facenas.adapters.insightface.dataset import ImageFolderDataset, MXFaceDataset

    folder = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for ident in ("a", "b", "c"):
        (folder / ident).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(folder / ident / f"{k}.png"), rng.integers(0, 255, (12, 12, 3), dtype=np.uint8))
    assert main(["data", "pack", str(folder), str(tmp_path / "packed"), "--json"]) == 0
    capsys.readouterr()
    src, packed = ImageFolderDataset(folder, flip=False), MXFaceDataset(tmp_path / "packed", flip=False)
    assert len(src) == len(packed) == 6 and packed.num_classes == 3
    for i in range(6):
        a, la = src.read(i)
        b, lb = packed.read(i)
        assert la == lb and np.array_equal(a, b)


@pytest.mark.parametrize("make_bad, message", [
    (lambda p: (p / "train.rec").write_bytes(b"\x0a\x23\xd7\xce\x10\x00"), "truncated"),
    (lambda p: (p / "x.bin").write_bytes(b"not a pickle"), "not a pickle"),
])
def test_cli_bad_input_exits_2_with_one_message(tmp_path, make_bad, message):
    (tmp_path / "train.idx").write_text("1\t0\n")
    make_bad(tmp_path)
    target = tmp_path / "x.bin" if (tmp_path / "x.bin").exists() else tmp_path
    code, _, err = run_cli("data", "info", str(target), "--json")
    assert code == 2
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_missing_path_and_empty_folder(tmp_path):
    code, _, err = run_cli("data", "info", str(tmp_path / "nope"))
    assert code == 2 and "no such file" in err
    (tmp_path / "empty" / "x").mkdir(parents=True)
    code, _, err = run_cli("data", "info", str(tmp_path / "empty"))
    assert code == 2 and "no identities" in err


@pytest.mark.real_data
def test_info_on_real_data(celeba299, lfw_bin):
    code, info, err = run_cli("data", "info", str(celeba299), "--json")
    assert code == 0, err
    assert (info["images"], info["identities"], info["image_size"], info["all_decoded"]) == (6284, 299, [112, 112], True)
    code, info, err = run_cli("data", "info", str(lfw_bin), "--json")
    assert code == 0, err
    assert (info["pairs"], info["same"], info["image_size"]) == (6000, 3000, [112, 112])


@pytest.mark.real_data
def test_eval_random_onnx_model_is_near_chance(tmp_path, lfw_devtest_bin):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, 2, 1),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 32)).eval()
    torch.onnx.export(model, torch.zeros(1, 3, 112, 112), str(tmp_path / "rand.onnx"), input_names=["data"],
                      output_names=["fc1"], dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}}, dynamo=False)
    code, res, err = run_cli("eval", "--model", str(tmp_path / "rand.onnx"), "--bin", str(lfw_devtest_bin), "--json")
    assert code == 0, err
    for key in ("lfw_devtest_acc", "lfw_devtest_acc_std", "lfw_devtest_tar_at_far_1e-3", "lfw_devtest_auc", "lfw_devtest_eer"):
        assert key in res
    assert 0.4 <= res["lfw_devtest_acc"] <= 0.65
    assert 0.0 <= res["lfw_devtest_tar_at_far_1e-3"] < 0.1 and 0.3 < res["lfw_devtest_eer"] < 0.7


def test_eval_facenas_checkpoint_and_arcface_torch_state_dict(tmp_path, synthetic_data, capsys):
    """MODEL as a facenas.model/1 file, and as a bare state dict (arcface_torch model.pt) with --network."""
    from facenas.adapters.insightface.backbones import get_model
    from facenas.adapters.insightface.backbones.checkpoint import save_backbone

    torch.manual_seed(0)
    model = get_model("mbf", width_mult=0.25, input_size=48, num_features=32).eval()
    save_backbone(model, tmp_path / "best.pt")
    val = str(synthetic_data / "val.bin")
    assert main(["eval", "--model", str(tmp_path / "best.pt"), "--bin", val, "--json"]) == 0
    from_checkpoint = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert from_checkpoint["image_size"] == 48  # pairs resized to the network's input
    for key in ("val_acc", "val_acc_std", "val_tar_at_far_1e-3", "val_auc", "val_eer"):
        assert 0.0 <= from_checkpoint[key] <= 1.0
    # arcface_torch's model.pt of its mbf (112x112 input), on a 20-pair cut of the same set
    from facenas.adapters.insightface.binset import read_bin_raw, write_bin

    images, issame = read_bin_raw(val)
    write_bin(tmp_path / "small.bin", images[:40], issame[:20].tolist())
    torch.save(get_model("mbf", num_features=32).state_dict(), tmp_path / "model.pt")
    assert main(["eval", "--model", str(tmp_path / "model.pt"), "--network", "mbf", "--bin", str(tmp_path / "small.bin"),
                 "--json"]) == 0
    from_state_dict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert from_state_dict["image_size"] == 112 and 0.0 <= from_state_dict["small_acc"] <= 1.0
    # a bare state dict without --network is a user error naming the fix
    assert main(["eval", "--model", str(tmp_path / "model.pt"), "--bin", str(tmp_path / "small.bin")]) == 2
    assert "--network" in capsys.readouterr().err
