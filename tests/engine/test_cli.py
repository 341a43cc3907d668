"""``facenas train`` end to end on the synthetic RecordIO (real loader, real verification):
train, kill -9 and --resume, and the same command under torchrun (2 gloo processes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import TINY_RECIPE



def _recipe(tmp_path: Path, data: Path, epochs: int = 4, workers: int = 0, name: str = "recipe.py") -> Path:
    path = tmp_path / name
    path.write_text(TINY_RECIPE.format(rec=str(data), val=str(data / "val.bin"), epochs=epochs, workers=workers,
                                        val_every=2, checkpoint_every=3))
    return path


def _facenas(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facenas.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, **kwargs)


def test_facenas_train_end_to_end(tmp_path, synthetic_data):
    recipe = _recipe(tmp_path, synthetic_data)
    proc = _facenas("train", str(recipe), "--output", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["global_step"] == 60 and final["default"] == final["val_acc"]
    assert final["val_acc"] > 0.6  # it learns: unseen synthetic identities, chance is 0.5 (seeded: 0.75)
    assert {"val_tar_at_far_1e-3", "val_auc", "val_eer", "best_val_acc"} <= set(final)
    assert "ETA" in proc.stderr and "loss=" in proc.stderr
    # an arcface_torch-style misspelt field is refused with a suggestion
    bad = tmp_path / "bad.py"
    bad.write_text(recipe.read_text() + "config.lerning_rate = 0.1\n")
    proc = _facenas("train", str(bad))
    assert proc.returncode == 2 and "lerning_rate" in proc.stderr
    # num_classes smaller than the data's identities: caught before training
    proc = _facenas("train", str(recipe), "--set", "num_classes=10", "--output", str(tmp_path / "small"))
    assert proc.returncode == 2 and "smaller than the 24 identities" in proc.stderr
    assert not (tmp_path / "small" / "checkpoint.pt").exists()


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["backbone"]


@pytest.mark.slow
def test_kill_minus_nine_and_resume_matches_an_uninterrupted_run(tmp_path, synthetic_data):
    recipe = _recipe(tmp_path, synthetic_data, epochs=6, workers=1)
    ref = _facenas("train", str(recipe), "--output", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "facenas.cli", "train", str(recipe), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = out / "checkpoint.pt"
        if ckpt.is_file() and torch.load(ckpt, weights_only=True)["global_step"] >= 20:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["global_step"]
    assert 20 <= killed_at < 90
    resumed = _facenas("train", str(recipe), "--output", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'checkpoint.pt'} at step {killed_at}" in resumed.stderr
    a, b = _state(tmp_path / "ref" / "checkpoint.pt"), _state(out / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # what the kill left is cleaned up (issue 18): no temporary files, each step logged once, last.pt at the
    # checkpoint's step, the lock given back
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == ".facenas.lock"]
    rows = [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["type"] == "train"]
    assert len(steps) == len(set(steps)) and [r["type"] for r in rows].count("final") == 1
    assert torch.load(out / "last.pt", weights_only=True)["meta"]["global_step"] == 90
    # the finished run is neither overwritten by a fresh run nor rewritten by --resume
    final = (out / "final.json").read_text()
    fresh = _facenas("train", str(recipe), "--output", str(out))
    assert fresh.returncode == 2 and "already holds a finished run" in fresh.stderr
    again = _facenas("train", str(recipe), "--output", str(out), "--resume", "--json")
    assert again.returncode == 0 and (out / "final.json").read_text() == final
    assert json.loads(again.stdout.strip().splitlines()[-1])["loss"] == json.loads(final)["loss"] > 0


@pytest.mark.slow
def test_a_second_training_into_the_same_folder_fails_naming_the_first(tmp_path, synthetic_data):
    recipe = _recipe(tmp_path, synthetic_data, epochs=6)
    out = tmp_path / "shared"
    first = subprocess.Popen([sys.executable, "-m", "facenas.cli", "train", str(recipe), "--output", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / "config.json").is_file():
            time.sleep(0.2)
        second = _facenas("train", str(recipe), "--output", str(out), "--overwrite")
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"in use by another run: pid {first.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_torchrun_two_processes_train(tmp_path, synthetic_data):
    recipe = _recipe(tmp_path, synthetic_data, epochs=2)
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "facenas.cli", "train", str(recipe), "--output", str(out), "--json"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "backend gloo, rank 1/2" in proc.stderr
    assert (out / "checkpoint_rank0.pt").is_file() and (out / "checkpoint_rank1.pt").is_file()
    shards = [torch.load(out / f"checkpoint_rank{r}.pt", weights_only=True)["head"]["weight"].shape[0] for r in (0, 1)]
    assert shards == [12, 12]  # 24 identities' centres split over 2 ranks
    final = json.loads((out / "final.json").read_text())
    assert final["global_step"] == 14  # 240 images / (16 x 2) = 7 steps per epoch


def test_facenas_eval_loads_an_arcface_torch_model_pt(tmp_path, synthetic_data, capsys):
    from facenas.adapters.insightface.backbones import get_model
    from facenas.cli import main

    torch.manual_seed(0)
    torch.save(get_model("mbf", num_features=128).state_dict(), tmp_path / "model.pt")  # arcface_torch's format
    args = ["eval", "--model", str(tmp_path / "model.pt"), "--bin", str(synthetic_data / "val.bin"), "--threads", "1"]
    assert main([*args, "--network", "mbf", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["val_acc"] <= 1.0 and result["image_size"] == 112
    assert main([*args, "--network", "r18"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "missing key(s)" in err
