"""The enas.search -> enas.retrain stages end to end on synthetic identities (local reporter)."""
from __future__ import annotations

import json
import math


from facenas.nas.space import create_space
from facenas.nas.stages import STAGES, run_stage_locally

from .test_search import flops_table



def test_search_then_retrain(synthetic_data, tmp_path):
    assert {"enas.search", "enas.retrain"} <= set(STAGES.names())
    space = create_space("enas_test")
    params = {
        "config": {"threads": None, "space": "enas_test", "rec": str(synthetic_data), "batch_size": 16, "steps_per_epoch": 2,
                   "controller_steps": 2, "arcs_per_step": 2, "val_batch_size": 16, "candidates": 3, "top_k": 2,
                   "reward": {"target_ms": 0.3, "exponent": -0.5}, "latency": {"table": flops_table(space)}},
        "epochs": 1}
    search = run_stage_locally("enas.search", params, str(tmp_path / "search"))
    assert len(search["architectures"]) == 2
    lines = [json.loads(l) for l in (tmp_path / "search" / "metrics.jsonl").read_text().splitlines()]
    assert [l["type"] for l in lines] == ["intermediate", "final"]
    assert {"reward", "accuracy", "latency_ms", "entropy"} <= set(lines[0])
    assert search["arch"] == search["architectures"][0]["arch"]
    assert search["arch_path"] == str(tmp_path / "search" / "search" / "arch.json")
    assert search["checkpoint"] == str(tmp_path / "search" / "search" / "checkpoint.pt")
    # the trial run again in its folder (NNI re-queues it on resume) continues the search: here, finished
    again = run_stage_locally("enas.search", {"config": {**params["config"]}, "epochs": 1}, str(tmp_path / "search"))
    assert again["architectures"] == search["architectures"]

    record = search["architectures"][0]
    retrain = run_stage_locally("enas.retrain", {
        "arch": record["arch"], "search": record,
        "config": {"rec": str(synthetic_data), "num_classes": 0, "num_image": 0, "image_size": 32,
                   "embedding_size": 16, "batch_size": 16, "num_epoch": 1, "warmup_epoch": 0, "lr": 0.05,
                   "val_targets": [str(synthetic_data / "val.bin")], "test_targets": [str(synthetic_data / "val.bin")],
                   "num_workers": 0, "threads": None, "verbose": 10_000, "frequent": 10},
        "latency": {"table": flops_table(space)}}, str(tmp_path / "retrain"))
    for key in ("val_acc", "mflops", "params_m", "latency_ms", "search_val_acc"):
        assert math.isfinite(retrain[key]), key
    assert retrain["search_val_acc"] == record["val_acc"]
    assert retrain["arch"] == record["arch"] and json.loads(open(retrain["arch_path"]).read()) == record["arch"]
    assert retrain["latency_ms"] == record["latency_ms"]
    assert retrain["default"] == retrain["val_acc"]


def test_search_stage_on_cuda_without_cuda_is_one_line_exit_2(synthetic_data, tmp_path, capsys):
    """`facenas search enas ... device=cuda` on a machine without CUDA: one line, exit 2, nothing written."""
    import pytest
    import torch

    from facenas.cli import main

    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        pytest.skip("CUDA is available here")
    params = json.dumps({"config": {"threads": None, "space": "enas_test", "rec": str(synthetic_data), "batch_size": 16,
                                    "steps_per_epoch": 1, "epochs": 1, "candidates": 1, "top_k": 1}})
    code = main(["-q", "search", "enas", "--params", params, "--set", "device=cuda", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("facenas search: error: device='cuda' but CUDA is not available; "
                                 "use device='cpu' or 'auto'"), err
    assert not (tmp_path / "out" / "search" / "checkpoint.pt").exists()
    assert STAGES.get("enas.search").check_params({"config": json.loads(params)["config"], "device": "cuda"},
                                                  str(tmp_path)).device == "cuda"  # the dry run passes anywhere
