"""The tnas.search and tnas.train stages, run locally the way an NNI trial runs them."""
from __future__ import annotations

import json

import pytest

from facenas.errors import ConfigError
from facenas.nas.stages import STAGES, run_stage_locally
from facenas.plugins.tnas.space import TEST_SPACE

from .conftest import random_teacher


def test_search_then_train_the_derived_student(synthetic_data, tmp_path):
    assert {"tnas.search", "tnas.train"} <= set(STAGES.names())
    search = run_stage_locally("tnas.search", {
        "space": dict(TEST_SPACE), "teacher": random_teacher(), "rec": str(synthetic_data), "batch_size": 16,
        "num_epoch": 2, "target_width_ratio": 0.6, "arch_lr": 0.1, "seed": 1, "device": "cpu"}, str(tmp_path / "s"))
    lines = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    inter = [x for x in lines if x["type"] == "intermediate"]
    assert len(inter) == 2 and all({"arch_entropy", "expected_mflops", "distill_loss", "default"} <= set(x) for x in inter)
    assert search["within_tolerance"] and (tmp_path / "s" / "search" / "arch.json").is_file()

    train = run_stage_locally("tnas.train", {
        "config": {"rec": str(synthetic_data), "image_size": 32, "embedding_size": 16, "batch_size": 16, "num_epoch": 1,
                   "warmup_epoch": 0, "val_targets": [str(synthetic_data / "val.bin")], "num_workers": 0,
                   "device": "cpu", "verbose": 10_000},
        "arch": str(tmp_path / "s" / "search"), "distill": {"teacher": random_teacher(), "margin_weight": 0.5},
    }, str(tmp_path / "t"))
    assert train["mflops"] == pytest.approx(search["mflops"])
    assert 0 <= train["val_acc"] <= 1 and train["default"] == train["val_acc"]
    assert train["margin_weight"] == 0.5 and (tmp_path / "t" / "train" / "best.pt").is_file()


def test_train_stage_builds_the_uniform_student_and_checks_its_arguments(synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        run_stage_locally("tnas.train", {"config": {"rec": "synthetic"}, "distill": {"teacher": "x"}}, str(tmp_path))
    with pytest.raises(ConfigError, match="space"):
        run_stage_locally("tnas.train", {"config": {"rec": "synthetic"}, "uniform_ratio": 0.5,
                                         "distill": {"teacher": "x"}}, str(tmp_path))
